"""{% recent_runs setting %}: the integration page's recent syncs; and how runs' times and
modes read on their pages."""

from __future__ import annotations

from datetime import timedelta

from django import template

register = template.Library()

RECENT = 10


@register.inclusion_tag("dynamics_crm/_recent_runs.html")
def recent_runs(setting):
    if setting is None or not setting.pk:
        return {"runs": [], "total": 0}
    return {"runs": list(setting.runs.all()[:RECENT]), "total": setting.runs.count()}


@register.filter
def seconds(value) -> str:
    """A duration (a timedelta or seconds) in words: "0.4 s", "12 s", "3 min 5 s",
    "1 h 2 min"; "—" when there is none."""
    if value is None or value == "":
        return "—"
    total = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if total < 10:
        return f"{total:.1f} s"
    total = round(total)
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


@register.filter
def mode_text(run) -> str:
    """The run's mode said once: its name, and why only when the reason adds something."""
    if not run.mode:
        return ""
    label = run.get_mode_display()
    reason = (run.mode_reason or "").strip().rstrip(".")
    if not reason or reason.lower() == label.lower():
        return label
    return f"{label}: {reason}."


@register.filter
def number(value) -> str:
    """12345 → "12,345"."""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return "" if value is None else str(value)
