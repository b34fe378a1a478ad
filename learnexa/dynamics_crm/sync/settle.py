"""Settle: what only a complete read decides.

Once every page is read, a full read knows which linked users are missing from Dynamics
(deleted, or out of the sync's scope); then the run's deactivations are counted and
compared with the company's limits, above which they are held for an admin (decide_held)
instead of applied (apply_deactivations).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import Exists, F, Min, OuterRef
from django.utils import timezone

from learnexa.accounts.models import User
from learnexa.dataflow.bulk import insert_rows

from .. import notifications
from ..models import SeenRecord, SyncChange, SyncRun
from .plan import Action, Change, Plan

if TYPE_CHECKING:
    from .context import SyncContext

MISSING_REASON = "No longer in Dynamics (deleted, or out of the sync's scope)."


def _plan_missing(run: SyncRun, link: str, deactivate_missing: bool = True) -> None:
    """After a complete full read: linked users whose record wasn't read are deactivated,
    or, with the company's switch off, reported as left active."""
    seen = SeenRecord.objects.filter(run=run, record_id=OuterRef(link))
    missing = User.objects.filter(
        company=run.company, is_active=True, **{f"{link}__isnull": False}
    ).exclude(Exists(seen))
    # The users this run created were read, but aren't among the seen records. Their ids
    # are the highest of the company's linked users: ids only grow, and while the run holds
    # the company's lease nothing else links a user.
    first_created = SyncChange.objects.filter(
        run=run, action=Action.CREATED, user__isnull=False
    ).aggregate(first=Min("user_id"))["first"]
    if first_created is not None:
        missing = missing.filter(pk__lt=first_created)
    plan = Plan(link=link, deactivate_missing=deactivate_missing)
    for user in missing.order_by("pk").iterator(chunk_size=2000):
        plan.deactivate(user, None, MISSING_REASON, missing=True)
    insert_rows(SyncChange, Change.COLUMNS, (c.row(run.pk) for c in plan.changes))
    SyncRun.objects.filter(pk=run.pk).update(skipped=F("skipped") + plan.counts[Action.SKIPPED])
    SeenRecord.objects.filter(run=run).delete()


def exceeds_limits(context: SyncContext, count: int) -> bool:
    setting = context.setting
    if count > setting.deactivation_limit_count:
        # Held whatever the share: no need to count the company's users (a read of every
        # one of them, a second or more among a million on PostgreSQL after a bulk load).
        return True
    synced = User.objects.filter(
        company=context.company, is_active=True, **{f"{context.link}__isnull": False}
    ).count()
    return count * 100 > setting.deactivation_limit_percent * max(synced, 1)


def settle(run: SyncRun, context: SyncContext, *, full: bool) -> None:
    setting = context.setting
    with transaction.atomic():
        if SyncRun.objects.filter(pk=run.pk, settled=True).exists():
            return  # a resumed run that had settled before it stopped
        if full:
            _plan_missing(run, context.link, setting.deactivate_missing)
        else:
            SeenRecord.objects.filter(run=run).delete()
        if full and not run.dry_run:
            # A full read re-decides everything: older holds are out of date.
            for older in SyncRun.objects.filter(
                company=run.company, hold=SyncRun.Hold.HELD
            ).exclude(pk=run.pk):
                older.changes.filter(pending=True).update(
                    pending=False, action=Action.SKIPPED, reason=f"Superseded by sync {run.pk}."
                )
                SyncRun.objects.filter(pk=older.pk).update(hold=SyncRun.Hold.SUPERSEDED)
        pending = run.changes.filter(pending=True, action=Action.DEACTIVATED)
        count = pending.count()
        update = {"settled": True}
        if run.dry_run:
            update["deactivated"] = count  # what would happen
        elif count and exceeds_limits(context, count):
            update.update(hold=SyncRun.Hold.HELD, held=count)
            transaction.on_commit(lambda: notifications.deactivations_held(run, count))
        elif count:
            update["deactivated"] = F("deactivated") + apply_deactivations(pending)
        SyncRun.objects.filter(pk=run.pk).update(**update)
    run.refresh_from_db()


def settle_at_once(run: SyncRun) -> None:
    """One person is not a mass deactivation: their deactivation applies at once (a lookup)."""
    pending = run.changes.filter(pending=True)
    run.deactivated = apply_deactivations(pending) if pending.exists() else 0
    run.settled = True
    run.save(update_fields=["deactivated", "settled"])


def apply_deactivations(changes) -> int:
    now = timezone.now()
    user_ids = list(changes.values_list("user_id", flat=True))
    done = 0
    for start in range(0, len(user_ids), 500):
        done += User.objects.filter(
            pk__in=user_ids[start : start + 500], is_active=True, is_site_admin=False
        ).update(
            is_active=False,
            deactivated_by_sync_at=now,
            updated_at=now,
            # Ends their sessions and voids their invitation links at once.
            sign_in_epoch=F("sign_in_epoch") + 1,
        )
    changes.update(pending=False)
    return done


@dataclass
class Decision:
    """What one admin's decision did: the changes it decided, and how many users it deactivated."""

    approve: bool
    emails: list[str] = field(default_factory=list)
    applied: int = 0


def decide_held(
    run: SyncRun, *, approve: bool, by: User, change_ids: Iterable[int] | None = None
) -> int:
    """An admin's decision on a run's held deactivations (all of them, or those in
    `change_ids`); returns how many users were deactivated."""
    return decide(run, approve=approve, by=by, change_ids=change_ids).applied


def decide(
    run: SyncRun, *, approve: bool, by: User, change_ids: Iterable[int] | None = None
) -> Decision:
    """Decide the run's pending held deactivations, or those of them in `change_ids`. The run
    is locked, so of two admins deciding the same people at once the second decides nothing.
    Once none is pending, the run's hold is approved if any of its people was approved."""
    decision = Decision(approve=approve)
    now = timezone.now()
    with transaction.atomic():
        run = SyncRun.objects.select_for_update().get(pk=run.pk)
        if run.hold != SyncRun.Hold.HELD:
            return decision
        pending = run.changes.filter(pending=True, action=Action.DEACTIVATED)
        if change_ids is not None:
            pending = pending.filter(pk__in=list(change_ids))
        decision.emails = list(pending.order_by("email", "pk").values_list("email", flat=True))
        if not decision.emails:
            return decision
        if approve:
            pending.update(decided_by=by, decided_at=now)
            decision.applied = apply_deactivations(pending)
            run.deactivated += decision.applied
        else:
            pending.update(
                pending=False,
                action=Action.SKIPPED,
                reason=f"Deactivation rejected by {by.email}.",
                decided_by=by,
                decided_at=now,
            )
        fields = ["deactivated"]
        if not run.changes.filter(pending=True, action=Action.DEACTIVATED).exists():
            approved = run.changes.filter(
                action=Action.DEACTIVATED, decided_by__isnull=False
            ).exists()
            run.hold = SyncRun.Hold.APPROVED if approved else SyncRun.Hold.REJECTED
            run.hold_decided_by = by
            run.hold_decided_at = now
            fields += ["hold", "hold_decided_by", "hold_decided_at"]
        run.save(update_fields=fields)
    return decision
