"""How far a running sync has got, in words and figures: for the run page, its live status
and the command line alike."""

from __future__ import annotations

from django.utils import timezone

from .models import SyncRun


def describe(run: SyncRun, now=None) -> dict:
    """{"percent": float | None, "eta_seconds": float | None, "waiting_seconds": float | None,
    "text": str}: percent and ETA only when the expected record count is known (an estimate:
    Dataverse's count may be a day old, so the percent stops at 100 and the text says
    "about"); the ETA once a page has been read, from the read rate so far."""
    now = now or timezone.now()
    running = run.status == SyncRun.Status.RUNNING
    waiting = None
    if running and run.throttled_until and run.throttled_until > now:
        waiting = (run.throttled_until - now).total_seconds()
    percent = eta = None
    expected = run.expected_records
    if expected:
        percent = min(100.0, 100.0 * run.records / expected)
    elif expected == 0 and run.is_finished:
        percent = 100.0
    if running and expected and run.pages >= 1 and run.records and run.started_at:
        elapsed = (now - run.started_at).total_seconds()
        if elapsed > 0 and run.records < expected:
            eta = (expected - run.records) / (run.records / elapsed)

    if expected is not None:
        parts = [f"{run.records:,} of about {expected:,} records read"]
    else:
        parts = [f"{run.records:,} record{'s' if run.records != 1 else ''} read"]
    if eta is not None:
        parts.append(f"{duration_text(eta)} left")
    if waiting is not None:
        parts.append(f"waiting {waiting:.0f} s: Dynamics asked us to slow down")
    return {
        "percent": None if percent is None else round(percent, 1),
        "eta_seconds": None if eta is None else round(eta, 1),
        "waiting_seconds": None if waiting is None else round(waiting, 1),
        "text": " · ".join(parts),
    }


def duration_text(seconds: float) -> str:
    """An estimate in words: "about 12 s", "about 3 min", "about 1 h 20 min"."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"about {seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60} min"
