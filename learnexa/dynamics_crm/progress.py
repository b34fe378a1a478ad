"""How far a running sync has got, in words and figures: for the run page, its live status
and the command line alike."""

from __future__ import annotations

from django.utils import timezone

from .models import SyncRun


def describe(run: SyncRun, now=None) -> dict:
    """{"percent": float | None, "eta_seconds": float | None, "waiting_seconds": float | None,
    "text": str}: percent and ETA only when the expected record count is known."""
    now = now or timezone.now()
    waiting = None
    if run.throttled_until and run.throttled_until > now:
        waiting = (run.throttled_until - now).total_seconds()
    percent = eta = None
    if run.expected_records:
        percent = min(100.0, 100.0 * run.records / run.expected_records)
    text = f"{run.records} records read"
    if waiting is not None:
        text += f"; waiting {waiting:.0f} s: Dynamics asked us to slow down"
    return {"percent": percent, "eta_seconds": eta, "waiting_seconds": waiting, "text": text}
