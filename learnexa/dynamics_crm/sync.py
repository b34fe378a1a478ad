"""The sync engine, top to bottom the way data flows:

    fetch a page → map → match → plan → apply → record

Each page is planned with two queries (users by linked id, users by email) and applied in
one transaction with bulk statements, so the work per page is constant however large the
company, and a run that stops half-way leaves whole pages behind, never half of one.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Lower
from django.utils import timezone

from learnexa.accounts.models import Company, User

from .credentials import AuthenticationError, TokenProvider
from .dataverse import DataverseClient, DataverseError
from .mapping import SYNCED_FIELDS, SYSTEMUSER_COLUMNS, MappedRecord, map_systemuser
from .models import DynamicsCrmSetting, SyncChange, SyncRun

logger = logging.getLogger(__name__)

Action = SyncChange.Action


class SyncAlreadyRunning(Exception):
    """Another run holds the company's lease."""


class LeaseLost(Exception):
    """The run stopped renewing its lease for too long and another run took over."""


@dataclass
class Plan:
    creates: list[User] = field(default_factory=list)
    # changed field names → the users whose changes are exactly those fields
    updates: dict[tuple[str, ...], list[User]] = field(default_factory=dict)
    changes: list[SyncChange] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def record(
        self,
        action: str,
        mapped: MappedRecord,
        user: User | None = None,
        *,
        fields: dict | None = None,
        reason: str = "",
    ) -> None:
        self.counts[action] += 1
        self.changes.append(
            SyncChange(
                user=user,
                systemuser_id=mapped.systemuser_id,
                email=mapped.email[:254],
                action=action,
                fields=fields or {},
                reason=reason[:500],
            )
        )


# -- fetch ------------------------------------------------------------------------------


def open_client(setting: DynamicsCrmSetting, **options) -> DataverseClient:
    from django.conf import settings

    return DataverseClient(
        setting.organization_uri,
        TokenProvider(setting),
        page_size=settings.LEARNEXA_DYNAMICS_PAGE_SIZE,
        timeout=settings.LEARNEXA_DYNAMICS_TIMEOUT,
        **options,
    )


# -- match and plan ---------------------------------------------------------------------


def _match_candidates(company: Company, records: list[MappedRecord]):
    ids = [r.systemuser_id for r in records if r.systemuser_id]
    emails = list({r.email_key for r in records if r.email_key})
    by_id = {
        u.dynamics_systemuser_id: u
        for u in User.objects.filter(company=company, dynamics_systemuser_id__in=ids)
    }
    by_email = {
        u.email.lower(): u
        for u in User.objects.filter(company=company)
        .annotate(email_lower=Lower("email"))
        .filter(email_lower__in=emails)
    }
    return by_id, by_email


def plan_changes(company: Company, records: list[MappedRecord], now=None) -> Plan:
    """Decide, for each record of a page, what happens to the platform's users."""
    now = now or timezone.now()
    plan = Plan()
    by_id, by_email = _match_candidates(company, records)
    planned_emails: set[str] = set()

    for mapped in records:
        if mapped.skip_reason:
            plan.record(Action.SKIPPED, mapped, reason=mapped.skip_reason)
            continue

        user = by_id.get(mapped.systemuser_id)
        if user is None:
            user = by_email.get(mapped.email_key)
            if user is not None and user.dynamics_systemuser_id not in (None, mapped.systemuser_id):
                plan.record(
                    Action.SKIPPED,
                    mapped,
                    user,
                    reason=f"Another Dynamics user ({user.dynamics_systemuser_id}) with the same "
                    "email is already linked to this platform user. Give each person their "
                    "own email in Dynamics.",
                )
                continue

        if user is None:
            if not mapped.is_enabled:
                plan.record(Action.SKIPPED, mapped, reason="Disabled in Dynamics; not created.")
            elif mapped.email_key in planned_emails:
                plan.record(
                    Action.SKIPPED,
                    mapped,
                    reason="Another Dynamics user with the same email comes first in this sync.",
                )
            else:
                planned_emails.add(mapped.email_key)
                _plan_create(plan, company, mapped, now)
            continue

        if mapped.email_key in planned_emails:
            # Two records resolved to one user (one by id, one by email): the first wins.
            plan.record(
                Action.SKIPPED,
                mapped,
                user,
                reason="Another Dynamics user with the same email comes first in this sync.",
            )
            continue
        planned_emails.add(mapped.email_key)
        _plan_update(plan, user, mapped, by_email, now)
    return plan


def _plan_create(plan: Plan, company: Company, mapped: MappedRecord, now) -> None:
    user = User(
        company=company,
        email=mapped.email,
        created_source=User.Source.DYNAMICS_CRM,
        dynamics_systemuser_id=mapped.systemuser_id,
        entra_object_id=mapped.entra_object_id,
        created_at=now,
        updated_at=now,
        **mapped.fields,
    )
    user.set_unusable_password()
    plan.creates.append(user)
    plan.record(
        Action.CREATED, mapped, user, fields={f: [None, v] for f, v in mapped.fields.items() if v}
    )


def _plan_update(plan: Plan, user: User, mapped: MappedRecord, by_email: dict, now) -> None:
    diff: dict[str, list] = {}
    notes: list[str] = []
    wanted = {"email": mapped.email, **mapped.fields}
    for name in SYNCED_FIELDS:
        new = wanted[name]
        old = getattr(user, name)
        # An empty value in Dynamics never wipes what the platform knows.
        if new and new != old:
            if name == "email":
                holder = by_email.get(mapped.email_key)
                if holder is not None and holder.pk != user.pk:
                    notes.append(f"Email not changed: {new} belongs to another platform user.")
                    continue
            diff[name] = [old, new]
    if user.dynamics_systemuser_id != mapped.systemuser_id:
        diff["dynamics_systemuser_id"] = [
            str(user.dynamics_systemuser_id) if user.dynamics_systemuser_id else None,
            str(mapped.systemuser_id),
        ]
    if mapped.entra_object_id and user.entra_object_id != mapped.entra_object_id:
        diff["entra_object_id"] = [
            str(user.entra_object_id) if user.entra_object_id else None,
            str(mapped.entra_object_id),
        ]

    action = Action.UPDATED
    if not mapped.is_enabled and user.is_active:
        if user.is_site_admin:
            notes.append(
                "Disabled in Dynamics, but left active: a site admin is never "
                "deactivated by a sync. Deactivate them by hand if needed."
            )
        else:
            diff["is_active"] = [True, False]
            diff["deactivated_by_sync_at"] = [None, now.isoformat()]
            action = Action.DEACTIVATED
    elif mapped.is_enabled and not user.is_active and user.deactivated_by_sync_at:
        diff["is_active"] = [False, True]
        diff["deactivated_by_sync_at"] = [user.deactivated_by_sync_at.isoformat(), None]
        action = Action.REACTIVATED

    if not diff:
        plan.counts[Action.SKIPPED if notes else "unchanged"] += 1
        if notes:
            plan.changes.append(
                SyncChange(
                    user=user,
                    systemuser_id=mapped.systemuser_id,
                    email=mapped.email[:254],
                    action=Action.SKIPPED,
                    reason=" ".join(notes)[:500],
                )
            )
        return

    for name, (_, new) in diff.items():
        if name == "deactivated_by_sync_at":
            user.deactivated_by_sync_at = now if new else None
        elif name in ("dynamics_systemuser_id", "entra_object_id"):
            setattr(
                user,
                name,
                mapped.systemuser_id
                if name == "dynamics_systemuser_id"
                else mapped.entra_object_id,
            )
        else:
            setattr(user, name, new)
    user.updated_at = now
    plan.updates.setdefault(tuple(sorted(diff)), []).append(user)
    plan.record(action, mapped, user, fields=diff, reason=" ".join(notes))


# -- apply and record -------------------------------------------------------------------


def apply_plan(
    run: SyncRun, plan: Plan, *, records: int, next_page_url: str | None, requests: int
) -> None:
    """Write one page's plan and the run's progress in one transaction."""
    with transaction.atomic():
        if not run.setting.renew_lease(run.lease_owner):
            raise LeaseLost(
                "This sync lost its lease (it stalled for too long) and another sync of the "
                "company took over; this one stopped without writing its last page."
            )
        if plan.creates:
            User.objects.bulk_create(plan.creates, batch_size=500)
        for fields, users in plan.updates.items():
            User.objects.bulk_update(users, [*fields, "updated_at"], batch_size=500)
        if plan.changes:
            for change in plan.changes:
                change.run = run
                change.user_id = change.user.pk if change.user else None
            SyncChange.objects.bulk_create(plan.changes, batch_size=1000)
        counters = {
            name: F(name) + plan.counts[name] for name in SyncRun.COUNTERS if plan.counts[name]
        }
        SyncRun.objects.filter(pk=run.pk).update(
            pages=F("pages") + 1,
            records=F("records") + records,
            requests=requests,
            next_page_url=next_page_url or "",
            **counters,
        )
    run.refresh_from_db(fields=["pages", "records", "requests", "next_page_url", *SyncRun.COUNTERS])


# -- a whole run ------------------------------------------------------------------------


def execute_run(
    run: SyncRun,
    *,
    progress: Callable[[SyncRun], None] | None = None,
    client: DataverseClient | None = None,
) -> SyncRun:
    """Run (or resume) one sync under the company's lease; return it finished.

    Raises SyncAlreadyRunning, without touching the run, if another run holds the lease.
    Any other failure is recorded on the run and its settings, which say what to fix.
    """
    setting = run.setting
    if not setting.acquire_lease(run.lease_owner):
        raise SyncAlreadyRunning(f"A sync of {run.company} is already running.")
    try:
        run.status = SyncRun.Status.RUNNING
        run.started_at = run.started_at or timezone.now()
        run.error = ""
        run.save(update_fields=["status", "started_at", "error"])
        try:
            client = client or open_client(setting)
            with client:
                _sync_pages(run, client, progress)
        except (AuthenticationError, DataverseError, LeaseLost) as exc:
            _finish(run, error=str(exc))
        except Exception as exc:
            logger.exception("Sync %s of %s failed unexpectedly", run.pk, run.company)
            _finish(
                run,
                error=f"The sync stopped on an unexpected error ({type(exc).__name__}); "
                "it has been logged for the operators.",
            )
        else:
            _finish(run)
    finally:
        setting.release_lease(run.lease_owner)
    return run


def _sync_pages(run: SyncRun, client: DataverseClient, progress) -> None:
    company = run.company
    start = run.next_page_url or client.collection_url("systemusers", select=SYSTEMUSER_COLUMNS)
    base_requests = run.requests if run.next_page_url else 0
    for page in client.pages(start):
        mapped = [map_systemuser(record) for record in page.records]
        plan = plan_changes(company, mapped)
        apply_plan(
            run,
            plan,
            records=len(page.records),
            next_page_url=page.next_link,
            requests=base_requests + client.requests,
        )
        if progress:
            progress(run)


def _finish(run: SyncRun, *, error: str = "") -> None:
    now = timezone.now()
    run.status = SyncRun.Status.FAILED if error else SyncRun.Status.SUCCEEDED
    run.error = error
    run.finished_at = now
    run.save(update_fields=["status", "error", "finished_at"])
    setting = run.setting
    setting.status = setting.Status.ERROR if error else setting.Status.OK
    setting.last_error = error
    setting.last_sync_at = now
    setting.save(update_fields=["status", "last_error", "last_sync_at", "updated_at"])
    log = logger.warning if error else logger.info
    log(
        "Sync %s of %s %s: %s",
        run.pk,
        run.company.slug,
        run.status,
        error or ", ".join(f"{n} {getattr(run, n)}" for n in SyncRun.COUNTERS),
    )
