"""Record what a site admin did to the integration (models/audit.py keeps it)."""

from __future__ import annotations

from .models import AuditEvent, SyncRun


def record(
    request,
    action: AuditEvent.Action,
    summary: str = "",
    *,
    details: dict | None = None,
    run: SyncRun | None = None,
) -> AuditEvent:
    """One event for the request's company, by the request's user. Never pass a secret's value
    in `summary` or `details`: name the field instead."""
    user = request.user if request.user.is_authenticated else None
    return AuditEvent.objects.create(
        company=request.company,
        actor=user,
        actor_email=user.email if user else "",
        action=action,
        summary=summary[:500],
        details=details or {},
        run=run,
    )
