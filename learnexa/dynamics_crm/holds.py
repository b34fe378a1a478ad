"""The company's held deactivations, whatever run they came from: the holds inbox's queries."""

from __future__ import annotations

from .models import SyncChange, SyncRun


def pending(company):
    """Every person whose deactivation is held for an admin's decision."""
    return SyncChange.objects.filter(
        run__company=company,
        run__hold=SyncRun.Hold.HELD,
        pending=True,
        action=SyncChange.Action.DEACTIVATED,
    )


def decided(company):
    """Every held deactivation an admin decided: approved (deactivated) or rejected (skipped)."""
    return SyncChange.objects.filter(run__company=company, decided_by__isnull=False)


def count(company) -> int:
    # Most pages show the banner: one cheap query when nothing is held.
    if not SyncRun.objects.filter(company=company, hold=SyncRun.Hold.HELD).exists():
        return 0
    return pending(company).count()
