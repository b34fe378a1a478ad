"""{% holds_inbox setting %}: the company's held deactivations on the integration page."""

from __future__ import annotations

from django import template

from ..models import SyncRun

register = template.Library()


@register.inclusion_tag("dynamics_crm/_holds.html")
def holds_inbox(setting):
    if setting is None or not setting.pk:
        return {"held_runs": []}
    return {"held_runs": list(setting.runs.filter(hold=SyncRun.Hold.HELD))}
