"""The sync engine, top to bottom the way data flows:

    fetch a page → map → match → plan → apply → record, page after page; then settle

Each page is matched with two queries (users by linked id; by Entra object id or email),
planned in Python, and applied with bulk statements, so the work per page is constant
however large the company. A page is written in one transaction with the run's checkpoint
(pages that come in faster than they are written share one): a run that stops half-way
leaves whole pages behind, never half of one, and resumes from its checkpoint. While a page
is written, the next one is fetched and mapped in one thread and planned in another.

Deactivations wait until the read is complete: only then is "missing from Dynamics" known,
and only then is the run's total compared with the company's limits, above which they are
held for an admin instead of applied.
"""

from __future__ import annotations

import base64
import logging
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import orjson
from django.conf import settings
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Exists, F, Min, OuterRef
from django.utils import timezone

from learnexa.accounts.models import Company, User
from learnexa.core.bulk import Rows, allocate_ids, insert_rows
from learnexa.core.pipeline import Prefetched
from learnexa.core.runtime import paged_run

from . import notifications
from .credentials import AuthenticationError, TokenProvider
from .dataverse import DataverseClient, DataverseError, DeltaExpired, Page
from .entra_session import NO_LONGER_ALLOWED
from .hosts import HostNotAllowed
from .mapping import MappedRecord, Mapping, Policy, parse_guid
from .models import DynamicsCrmSetting, SeenRecord, SyncChange, SyncRun
from .retries import budget_from_settings

logger = logging.getLogger(__name__)

Action = SyncChange.Action
# The users fields holding Dynamics and Entra ID GUIDs.
GUID_FIELDS = ("dynamics_systemuser_id", "dynamics_contact_id", "entra_object_id")
MISSING_REASON = "No longer in Dynamics (deleted, or out of the sync's scope)."
SITE_ADMIN_REASON = "Matches a site admin; site admins are managed here, not by the sync."
ADMIN_LEFT_ACTIVE = (
    " Left active: a site admin is never deactivated by a sync; deactivate them by hand if needed."
)
SWITCHED_OFF = (
    "; left active because deactivating users deleted in Dynamics or out of scope is switched off."
)
# Where change tracking is off, changes are polled on modifiedon, overlapping the last read
# by this much so that a change saved while it ran is not missed.
POLL_OVERLAP = timedelta(minutes=10)


class SyncAlreadyRunning(Exception):
    """Another run holds the company's lease."""


class LeaseLost(Exception):
    """The run stopped renewing its lease for too long and another run took over."""


class SliceEnded(Exception):
    """The run used its time slice; it goes back in the queue and resumes from its page."""


class NewUser:
    """A user the sync creates: the row to insert, not a model instance, because building
    thousands of those per page costs more than inserting them. Its id is given at insert."""

    __slots__ = ("pk", "values")

    _COLUMNS = [f for f in User._meta.concrete_fields if f.name != "last_login"]
    # The users columns a created user sets, in this order, the id first.
    FIELDS = [f.name for f in _COLUMNS]
    INDEX = {name: i for i, name in enumerate(FIELDS)}
    # Every column's default; the id, password, email, links and times are set per user.
    TEMPLATE = [None if f.null or f.primary_key else f.get_default() for f in _COLUMNS]

    def __init__(self, values: list):
        self.pk: int | None = None
        self.values = values


_EMAIL, _ENTRA_ID = NewUser.INDEX["email"], NewUser.INDEX["entra_object_id"]


@dataclass(slots=True)
class Change:
    """A SyncChange row to be written; plain, since a page makes thousands of them."""

    user: User | NewUser | None
    systemuser_id: object
    email: str
    action: str
    fields: dict
    reason: str
    pending: bool

    COLUMNS = ["run", "user", "systemuser_id", "email", "action", "fields", "reason", "pending"]

    def row(self, run_id: int) -> tuple:
        # A dry run's would-be users have no id: their changes name no user.
        user_id = self.user.pk if self.user is not None else None
        return (
            run_id,
            user_id,
            self.systemuser_id,
            self.email,
            self.action,
            self.fields,
            self.reason,
            self.pending,
        )

    def get_action_display(self) -> str:
        return Action(self.action).label


@dataclass
class Plan:
    # The users field linking a user to a record of the table being synced.
    link: str = "dynamics_systemuser_id"
    creates: list[NewUser] = field(default_factory=list)
    # changed field names → the users whose changes are exactly those fields
    updates: dict[tuple[str, ...], list[User]] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    # The rows to insert, converted by prepare(); ids of new users are given at insert.
    user_rows: Rows | None = None
    change_rows: Rows | None = None
    seen_rows: Rows | None = None
    # written_keys(), kept by prepare() so that the planning thread works it out.
    written: set = field(default_factory=set)
    # The company's switch: deactivate users deleted in Dynamics or out of scope.
    deactivate_missing: bool = True

    def prepare(self, run_id: int, seen: list, connection=None) -> None:
        """Convert the rows to write, which is Python work: done while the page before is
        written. `seen` are the record ids a full read has seen (see _plan_missing)."""
        self.written = self.written_keys()
        self.user_rows = Rows(
            User, NewUser.FIELDS, [user.values for user in self.creates], connection=connection
        )
        self.change_rows = Rows(
            SyncChange, Change.COLUMNS, (c.row(run_id) for c in self.changes), connection=connection
        )
        self.seen_rows = Rows(
            SeenRecord,
            ["run", "record_id"],
            ((run_id, i) for i in dict.fromkeys(seen)),
            connection=connection,
        )

    def written_keys(self) -> set:
        """What writing this plan changes that matching looks at: the link, Entra object id
        and email of every user it creates or updates, and the ids of those it updates."""
        keys = set()
        rows = [user.values for user in self.creates]
        for at in (NewUser.INDEX[self.link], _ENTRA_ID):
            keys.update([values[at] for values in rows])
        keys.update([values[_EMAIL].lower() for values in rows])
        for users in self.updates.values():
            for user in users:
                keys.update((user.pk, getattr(user, self.link), user.entra_object_id))
                keys.add(user.email.lower())
        keys.discard(None)
        return keys

    def record(
        self,
        action: str,
        mapped: MappedRecord | None,
        user: User | None = None,
        *,
        fields: dict | None = None,
        reason: str = "",
        pending: bool = False,
        count: bool = True,
    ) -> None:
        if count:
            self.counts[action] += 1
        self.changes.append(
            Change(
                user,
                mapped.record_id if mapped else getattr(user, self.link),
                (mapped.email if mapped else user.email)[:254],
                action,
                fields or {},
                reason[:500],
                pending,
            )
        )

    def deactivate(
        self, user: User, mapped: MappedRecord | None, reason: str, *, missing: bool = False
    ) -> None:
        """Deactivate `user` once the run settles; `missing` when the reason is a deletion
        in Dynamics or leaving the scope, which the company's switch may rule out."""
        if user.is_site_admin:
            self.record(Action.SKIPPED, mapped, user, reason=reason + ADMIN_LEFT_ACTIVE)
        elif missing and not self.deactivate_missing:
            self.record(Action.SKIPPED, mapped, user, reason=reason.rstrip(".") + SWITCHED_OFF)
        else:
            # Counted when settled: applied, or held.
            self.record(Action.DEACTIVATED, mapped, user, reason=reason, pending=True, count=False)


# -- fetch ------------------------------------------------------------------------------


RETRY_OPTIONS = ("max_retries", "backoff_seconds", "max_throttle_wait", "max_waits", "sleep")


def open_client(setting: DynamicsCrmSetting, **options) -> DataverseClient:
    """A client for the company's organization, whose token requests share its budget of
    retries and waits. Nothing is sent yet."""
    retry = budget_from_settings(**{k: options.pop(k) for k in RETRY_OPTIONS if k in options})
    options = {
        "page_size": settings.LEARNEXA_DYNAMICS_PAGE_SIZE,
        "timeout": settings.LEARNEXA_DYNAMICS_TIMEOUT,
        **options,
    }
    try:
        return DataverseClient(
            setting.organization_uri, TokenProvider(setting, retry), retry=retry, **options
        )
    except HostNotAllowed as exc:
        raise DataverseError(f"{exc} {NO_LONGER_ALLOWED}") from exc


# -- match and plan ---------------------------------------------------------------------


def _users_where(company: Company, conditions: dict[str, list]) -> list[User]:
    """The company's users whose column is one of its values, for any of `conditions`
    ({column: values}; values are GUIDs as parse_guid gives them, or lowercased emails for
    "lower(email)"). The users' GUIDs are text too, so that they compare with the records'.

    Each list goes as one JSON parameter: thousands of placeholders, or an array of UUIDs,
    cost more to convert than the query takes. Each value is one index lookup, never a scan
    testing each row against every value.
    """
    quote = connection.ops.quote_name
    table, company_id = quote(User._meta.db_table), quote("company_id")
    postgresql = connection.vendor == "postgresql"
    statements, params = [], []
    for column, values in conditions.items():
        if not values:
            continue
        uuids = column != "lower(email)"
        if uuids:
            expression = f"u.{quote(User._meta.get_field(column).column)}"
        else:
            # Emails as the index has them (see accounts.models.CaseFolded).
            email = quote("email")
            expression = f"LOWER(u.{email})" if postgresql else f"u.{email} COLLATE NOCASE"
        if postgresql:
            # One index lookup per value, whatever the statistics say: during a first sync
            # they say the company has almost no users, and PostgreSQL would otherwise read
            # all of them for every page (OFFSET 0 keeps the subquery from being merged).
            statements.append(
                f"SELECT u.* FROM jsonb_array_elements_text(%s::jsonb) AS k(v) CROSS JOIN "
                f"LATERAL (SELECT * FROM {table} u WHERE u.{company_id} = %s AND "
                f"{expression} = k.v{'::uuid' if uuids else ''} OFFSET 0) u"
            )
        else:
            # SQLite probes the index for each value of the list, in the list's order (a
            # CROSS JOIN keeps that order): an IN (subquery) would first copy and sort them.
            statements.append(
                f"SELECT u.* FROM json_each(%s) AS k CROSS JOIN {table} u "
                f"WHERE {expression} = k.value AND u.{company_id} = %s"
            )
            values = [value.replace("-", "") for value in values] if uuids else values
        params += [orjson.dumps(values).decode(), company.pk]
    if not statements:
        return []
    users = {user.pk: user for user in User.objects.raw(" UNION ALL ".join(statements), params)}
    for user in users.values():
        for name in GUID_FIELDS:
            if (value := getattr(user, name)) is not None:
                setattr(user, name, str(value))
    return list(users.values())


def _match_candidates(company: Company, records: list[MappedRecord], link: str):
    ids = [r.record_id for r in records if r.record_id]
    by_id = {getattr(u, link): u for u in _users_where(company, {link: ids})}
    # The rest only for records not linked yet, or whose email changed: in a steady state
    # a page costs one query, and otherwise two.
    unsettled = [
        r
        for r in records
        if r.email_key
        and (r.record_id not in by_id or by_id[r.record_id].email.lower() != r.email_key)
    ]
    entra_ids = {r.entra_object_id for r in unsettled if r.entra_object_id}
    emails = {r.email_key for r in unsettled}
    by_entra, by_email = {}, {}
    conditions = {"entra_object_id": list(entra_ids), "lower(email)": list(emails)}
    for u in _users_where(company, conditions):
        user = by_id.get(getattr(u, link), u)
        if u.entra_object_id in entra_ids:
            by_entra[u.entra_object_id] = user
        if (email := u.email.lower()) in emails:
            by_email[email] = user
    return by_id, by_entra, by_email


@dataclass
class Candidates:
    """The platform users a page's records could be, found before planning so that planning
    is Python work only."""

    by_id: dict
    by_entra: dict
    by_email: dict
    # Active users linked to records a delta reports deleted.
    deleted: list[User]
    # Everything looked up and found (record ids, Entra object ids, emails, user ids): if
    # writing another page changes any of them, this page must be matched again.
    keys: set


def match_page(company: Company, records: list[MappedRecord], link: str, deleted_ids=()):
    by_id, by_entra, by_email = _match_candidates(company, records, link)
    deleted = []
    if deleted_ids:
        deleted = list(
            User.objects.filter(company=company, is_active=True, **{f"{link}__in": deleted_ids})
        )
    keys = {parse_guid(i) for i in deleted_ids}
    for r in records:
        keys.update((r.record_id, r.entra_object_id, r.email_key))
    for users in (by_id, by_entra, by_email):
        keys.update(user.pk for user in users.values())
    keys.update(user.pk for user in deleted)
    keys.discard(None)
    return Candidates(by_id, by_entra, by_email, deleted, keys)


def plan_changes(
    company: Company,
    records: list[MappedRecord],
    mapping: Mapping,
    *,
    create_users: bool = True,
    now=None,
) -> Plan:
    """Match a page's records and plan what happens to them (see plan_page)."""
    candidates = match_page(company, records, mapping.source.link_field)
    return plan_page(company, records, mapping, candidates, create_users=create_users, now=now)


def plan_page(
    company: Company,
    records: list[MappedRecord],
    mapping: Mapping,
    candidates: Candidates,
    *,
    create_users: bool = True,
    now=None,
) -> Plan:
    """Decide, for each record of a page, what happens to the platform's users, and to
    those linked to records a delta reports deleted.

    Matching, in order: the linked Dynamics user, the Entra object id, the email
    (case-insensitively). When two Dynamics users share an email, the first in Dynamics'
    order (by primary key, whatever the paging) keeps it and the other is reported for the
    admin; nobody is duplicated or merged. A record that matches a site admin by any of
    these is left alone: the sync never changes a site admin.
    """
    now = now or timezone.now()
    plan = Plan(link=mapping.source.link_field, deactivate_missing=mapping.deactivate_missing)
    link = plan.link
    by_id, by_entra, by_email = candidates.by_id, candidates.by_entra, candidates.by_email
    admins = _site_admin_keys(candidates)
    claimed: set[int] = set()
    planned_emails: set[str] = set()
    # What every user this page creates has in common.
    template = NewUser.TEMPLATE.copy()
    index = NewUser.INDEX
    template[index["company"]] = company.pk
    template[index["created_source"]] = User.Source.DYNAMICS_CRM
    template[index["created_at"]] = template[index["updated_at"]] = now
    # Where a record's mapped fields go in the row, in the order the mapping gives them.
    slots = [index[rule.field] for rule in mapping.rules]

    for mapped in records:
        if mapped.skip_reason:
            plan.record(Action.SKIPPED, mapped, reason=mapped.skip_reason)
            continue

        if admins and (admin := _matching_admin(admins, mapped)) is not None:
            plan.record(Action.SKIPPED, mapped, admin, reason=SITE_ADMIN_REASON)
            if not mapped.is_enabled and admin.is_active:
                # Said too, as the sync says it of anyone it would deactivate otherwise.
                reason = mapped.disabled_reason + ADMIN_LEFT_ACTIVE
                plan.record(Action.SKIPPED, mapped, admin, reason=reason, count=False)
            continue

        user = by_id.get(mapped.record_id) or (
            by_entra.get(mapped.entra_object_id) if mapped.entra_object_id else None
        )
        if user is None:
            user = by_email.get(mapped.email_key)
            if user is not None and getattr(user, link) not in (None, mapped.record_id):
                plan.record(
                    Action.SKIPPED,
                    mapped,
                    user,
                    reason=(
                        f"This email belongs to a platform user linked to another Dynamics user "
                        f"({getattr(user, link)}); two Dynamics users share it. Give each "
                        "person their own email in Dynamics."
                    ),
                )
                continue

        if user is not None and user.pk in claimed:
            plan.record(
                Action.SKIPPED,
                mapped,
                user,
                reason=("Another Dynamics user in this sync matched the same platform user."),
            )
            continue

        if user is None:
            if not mapped.is_enabled:
                plan.record(Action.SKIPPED, mapped, reason=f"{mapped.disabled_reason} Not created.")
            elif not create_users:
                plan.record(Action.SKIPPED, mapped, reason="Creating users is switched off.")
            elif mapped.email_key in planned_emails:
                plan.record(
                    Action.SKIPPED,
                    mapped,
                    reason=("Another Dynamics user with the same email comes first in this sync."),
                )
            else:
                planned_emails.add(mapped.email_key)
                _plan_create(plan, template, slots, mapped)
            continue

        claimed.add(user.pk)
        planned_emails.add(mapped.email_key)
        _plan_update(plan, user, mapped, mapping, by_email, now)
    plan.counts[Action.CREATED] += len(plan.creates)
    for user in candidates.deleted:
        plan.deactivate(user, None, "Deleted in Dynamics.", missing=True)
    _set_unusable_passwords(plan.creates)
    return plan


def _site_admin_keys(candidates: Candidates) -> tuple[dict, dict, dict] | None:
    """The site admins among a page's candidates, by record id, Entra object id and email:
    from what matching loaded, so no query. None when there is none (nearly every page)."""
    found = tuple(
        {key: user for key, user in users.items() if user.is_site_admin}
        for users in (candidates.by_id, candidates.by_entra, candidates.by_email)
    )
    return found if any(found) else None


def _matching_admin(admins: tuple[dict, dict, dict], mapped: MappedRecord) -> User | None:
    """The site admin a record matches by any key, whichever matching would pick first."""
    by_id, by_entra, by_email = admins
    return (
        by_id.get(mapped.record_id)
        or (by_entra.get(mapped.entra_object_id) if mapped.entra_object_id else None)
        or by_email.get(mapped.email_key)
    )


NAMES_PAGE_SIZE = 5000


def _name_reader(client: DataverseClient) -> Callable[[str, list[str]], list[dict]]:
    """How a run reads lookups' related rows when its pages lack their names (see
    mapping.LookupNames). A table the sync may not read leaves those fields as they are
    here rather than failing the run; what may pass (throttling, an outage) fails it."""

    def read(entity_set: str, columns: list[str]) -> list[dict]:
        url, rows = client.collection_url(entity_set, select=columns), []
        try:
            # Pages as large as Dataverse serves, whatever the sync's page size: one request
            # for any organization's business units.
            while url:
                body = client.get(url, prefer=f"odata.maxpagesize={NAMES_PAGE_SIZE}")
                rows += [row for row in body.get("value") or () if isinstance(row, dict)]
                url = body.get("@odata.nextLink")
            return rows
        except DataverseError as exc:
            if exc.retryable:
                raise
            logger.warning("The sync could not read %s for their names: %s", entity_set, exc)
            return []

    return read


def _plan_create(plan: Plan, template: list, slots: list[int], mapped: MappedRecord) -> None:
    values = template.copy()
    fields = mapped.fields
    for at, value in zip(slots, fields.values(), strict=True):
        values[at] = value
    values[_EMAIL] = mapped.email
    values[NewUser.INDEX[plan.link]] = mapped.record_id
    values[_ENTRA_ID] = mapped.entra_object_id
    user = NewUser(values)
    plan.creates.append(user)
    # What plan.record does, without its choices: a first sync creates every user.
    plan.changes.append(
        Change(
            user,
            mapped.record_id,
            mapped.email[:254],
            Action.CREATED,
            {f: [None, v] for f, v in fields.items() if v},
            "",
            False,
        )
    )


PASSWORD_BYTES = 30  # a multiple of 3: each user's part of the base64 text has no padding


def _set_unusable_passwords(users: list[NewUser]) -> None:
    """Unusable until the person sets one, with a random suffix as Django's own; drawn for
    the whole page at once, since a call per user dominates a large first sync."""
    if not users:
        return
    text = base64.urlsafe_b64encode(secrets.token_bytes(PASSWORD_BYTES * len(users))).decode()
    width, at = PASSWORD_BYTES * 4 // 3, NewUser.INDEX["password"]
    for n, user in enumerate(users):
        user.values[at] = UNUSABLE_PASSWORD_PREFIX + text[n * width : (n + 1) * width]


def _field_diff(user: User, mapped: MappedRecord, mapping: Mapping) -> dict[str, list]:
    diff = {}
    for rule in mapping.rules:
        new, old = mapped.fields.get(rule.field, ""), getattr(user, rule.field)
        if rule.policy == Policy.ON_CREATE or (rule.policy == Policy.IF_EMPTY and old):
            continue
        if mapped.unknown and rule.field in mapped.unknown:
            continue
        if (new and new != old) or (not new and old and rule.clear):
            diff[rule.field] = [old, new]
    return diff


def _plan_update(
    plan: Plan, user: User, mapped: MappedRecord, mapping: Mapping, by_email: dict, now
) -> None:
    diff = _field_diff(user, mapped, mapping)
    notes = []
    if mapped.email != user.email:
        holder = by_email.get(mapped.email_key)
        if holder is not None and holder.pk != user.pk:
            notes.append(f"Email not changed: {mapped.email} belongs to another platform user.")
        else:
            diff["email"] = [user.email, mapped.email]
    for name, value in (
        (plan.link, mapped.record_id),
        ("entra_object_id", mapped.entra_object_id),
    ):
        if value and getattr(user, name) != value:
            old = getattr(user, name)
            diff[name] = [str(old) if old else None, str(value)]

    action = Action.UPDATED
    if mapped.is_enabled and not user.is_active and user.deactivated_by_sync_at:
        # Only the users a sync deactivated; an admin's own suspension stays.
        diff["is_active"] = [False, True]
        action = Action.REACTIVATED

    if diff:
        for name, (_, new) in diff.items():
            if name == "is_active":
                user.is_active, user.deactivated_by_sync_at = True, None
            elif name == plan.link:
                setattr(user, name, mapped.record_id)
            elif name == "entra_object_id":
                user.entra_object_id = mapped.entra_object_id
            else:
                setattr(user, name, new)
        fields = sorted({*diff} | ({"deactivated_by_sync_at"} if "is_active" in diff else set()))
        user.updated_at = now
        plan.updates.setdefault(tuple(fields), []).append(user)
        plan.record(action, mapped, user, fields=diff, reason=" ".join(notes))
    elif notes:
        plan.record(Action.SKIPPED, mapped, user, reason=" ".join(notes))

    if not mapped.is_enabled and user.is_active:
        plan.deactivate(user, mapped, mapped.disabled_reason, missing=mapped.out_of_scope)
    elif not diff and not notes:
        plan.counts["unchanged"] += 1


# -- apply and record -------------------------------------------------------------------


class PageTransactions:
    """Pages written one after another share a transaction until it has lasted
    LEARNEXA_SYNC_TRANSACTION_SECONDS. A commit writes out every database page that the pages written since
    the last one changed, and a first sync's pages change most of the users indexes' pages
    (emails and ids are random): committing each page took a tenth of a large first sync.
    A run that stops loses the pages since the last commit, whose checkpoint it resumes
    from; never part of a page.
    """

    def __init__(self, seconds: float | None = None):
        self.seconds = settings.LEARNEXA_SYNC_TRANSACTION_SECONDS if seconds is None else seconds
        self._open = None  # the open transaction's atomic block
        self._since = 0.0

    @contextmanager
    def page(self, *, last: bool = False):
        """Write one page in the open transaction (or a new one); commit it when it has
        lasted long enough or this is the last page, roll it back if writing fails."""
        if self._open is None:
            self._open = transaction.atomic()
            self._open.__enter__()
            self._since = time.monotonic()
        try:
            yield
        except BaseException:
            self._close(*sys.exc_info())  # rolls back
            raise
        if last or time.monotonic() - self._since >= self.seconds:
            self.commit()

    def commit(self) -> None:
        self._close(None, None, None)

    def _close(self, *exc_info) -> None:
        if self._open is not None:
            opened, self._open = self._open, None
            opened.__exit__(*exc_info)


def apply_plan(run: SyncRun, plan: Plan, page: Page, *, requests: int, throttle_wait: float):
    """Write one page's prepared plan and the run's progress in one transaction: the
    caller's, if it has one (see PageTransactions)."""
    # No savepoint within the caller's transaction: SQLite would keep a copy of every
    # database page the page's inserts touch, so as to be able to undo just them.
    with transaction.atomic(savepoint=False):
        if not run.setting.renew_lease(run.lease_owner):
            raise LeaseLost(
                "This sync lost its lease (it stalled for too long) and another sync of the "
                "company took over; this one stopped without writing its last page."
            )
        if not run.dry_run:
            if plan.creates:
                _insert_users(plan)
            for fields, users in plan.updates.items():
                User.objects.bulk_update(users, [*fields, "updated_at"], batch_size=500)
        plan.seen_rows.insert()
        plan.change_rows.insert()
        counters = {n: F(n) + plan.counts[n] for n in SyncRun.COUNTERS if plan.counts[n]}
        SyncRun.objects.filter(pk=run.pk).update(
            pages=F("pages") + 1,
            records=F("records") + len(page.records),
            requests=requests,
            throttle_wait_seconds=throttle_wait,
            next_page_url=page.next_link or "",
            read_complete=not page.next_link,
            new_delta_link=page.delta_link or F("new_delta_link"),
            **counters,
        )
        if plan.creates and not run.dry_run and run.setting.send_welcome_email:
            ids = [u.pk for u in plan.creates]
            transaction.on_commit(
                lambda: notifications.welcome(User.objects.filter(pk__in=ids).order_by("pk"))
            )
    run.refresh_from_db(
        fields=[
            "pages",
            "records",
            "requests",
            "throttle_wait_seconds",
            "next_page_url",
            "read_complete",
            "new_delta_link",
            *SyncRun.COUNTERS,
        ]
    )


def _insert_users(plan: Plan) -> None:
    """Insert new users with ids reserved now; their change records point to them."""
    ids = allocate_ids(User, len(plan.creates))
    for user, pk in zip(plan.creates, ids, strict=True):
        user.pk = pk
    plan.user_rows.set_column("id", ids)
    plan.user_rows.insert()
    plan.change_rows.set_column("user", [c.user and c.user.pk for c in plan.changes])


# -- settle: what a complete read decides -----------------------------------------------


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


def exceeds_limits(setting: DynamicsCrmSetting, count: int) -> bool:
    link = Mapping.for_setting(setting).source.link_field
    synced = User.objects.filter(
        company=setting.company, is_active=True, **{f"{link}__isnull": False}
    ).count()
    return count > setting.deactivation_limit_count or (
        count * 100 > setting.deactivation_limit_percent * max(synced, 1)
    )


def _settle(run: SyncRun, *, full: bool) -> None:
    setting = run.setting
    with transaction.atomic():
        if SyncRun.objects.filter(pk=run.pk, settled=True).exists():
            return  # a resumed run that had settled before it stopped
        if full:
            link = Mapping.for_setting(setting).source.link_field
            _plan_missing(run, link, setting.deactivate_missing)
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
        elif count and exceeds_limits(setting, count):
            update.update(hold=SyncRun.Hold.HELD, held=count)
            transaction.on_commit(lambda: notifications.deactivations_held(run, count))
        elif count:
            update["deactivated"] = F("deactivated") + apply_deactivations(pending)
        SyncRun.objects.filter(pk=run.pk).update(**update)
    run.refresh_from_db()


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


def decide_held(run: SyncRun, *, approve: bool, by: User) -> int:
    """An admin's decision on a run's held deactivations; returns how many were applied."""
    with transaction.atomic():
        run = SyncRun.objects.select_for_update().get(pk=run.pk)
        if run.hold != SyncRun.Hold.HELD:
            return 0
        pending = run.changes.filter(pending=True, action=Action.DEACTIVATED)
        done = 0
        if approve:
            done = apply_deactivations(pending)
            run.deactivated += done
        else:
            pending.update(
                pending=False, action=Action.SKIPPED, reason=f"Deactivation rejected by {by.email}."
            )
        run.hold = SyncRun.Hold.APPROVED if approve else SyncRun.Hold.REJECTED
        run.hold_decided_by = by
        run.save(update_fields=["hold", "hold_decided_by", "deactivated"])
    return done


# -- a whole run ------------------------------------------------------------------------


def execute_run(
    run: SyncRun,
    *,
    progress: Callable[[SyncRun], None] | None = None,
    client: DataverseClient | None = None,
    time_slice: float | None = None,
) -> SyncRun:
    """Run (or resume) one sync under the company's lease; return it finished.

    Raises SyncAlreadyRunning, without touching the run, if another run holds the lease.
    Any other failure is recorded on the run and its settings, which say what to fix.
    With `time_slice` (seconds), a long read stops after the page that used it up and the
    run is left queued (`run.sliced`), so that a worker serves other companies in between.
    """
    # The settings as they are now, not as the caller loaded them.
    run.setting = setting = DynamicsCrmSetting.objects.select_related("company").get(
        pk=run.setting_id
    )
    if not setting.acquire_lease(run.lease_owner):
        raise SyncAlreadyRunning(f"A sync of {run.company} is already running.")
    run.retryable = run.will_retry = run.sliced = False
    deadline = time.monotonic() + time_slice if time_slice else None
    counted = run.requests, run.throttle_wait_seconds
    try:
        run.status = SyncRun.Status.RUNNING
        run.started_at = run.started_at or timezone.now()
        run.finished_at = None
        run.error = ""
        run.save(update_fields=["status", "started_at", "finished_at", "error"])
        try:
            client = client or open_client(setting)
            with client, paged_run() as after_page:
                _run(run, client, progress, deadline, after_page)
        except SliceEnded:
            run.sliced = True
            run.status = SyncRun.Status.QUEUED
            run.save(update_fields=["status"])
        except (AuthenticationError, DataverseError, LeaseLost) as exc:
            run.retryable = getattr(exc, "retryable", False)
            _count_requests(run, client, counted)
            finish_run(run, error=str(exc))
        except (InterfaceError, OperationalError) as exc:
            # The database connection dropped (a restart, a failover) or stayed locked: record
            # the failure over a fresh connection; a retry resumes from the last page.
            logger.exception("Sync %s of %s lost the database", run.pk, run.company)
            connection.close_if_unusable_or_obsolete()
            run.retryable = True
            _count_requests(run, client, counted)
            finish_run(
                run,
                error=f"The sync lost its connection to the database, or found it locked "
                f"({type(exc).__name__}); it stopped after its last complete page.",
            )
        except Exception as exc:
            logger.exception("Sync %s of %s failed unexpectedly", run.pk, run.company)
            _count_requests(run, client, counted)
            finish_run(
                run,
                error=f"The sync stopped on an unexpected error ({type(exc).__name__}); "
                "it has been logged for the operators.",
            )
        else:
            finish_run(run)
    finally:
        setting.release_lease(run.lease_owner)
    return run


def _count_requests(run: SyncRun, client: DataverseClient | None, counted: tuple) -> None:
    """A failed run's requests and waits, including those since its last written page."""
    if client is None:
        return
    run.requests = counted[0] + client.requests
    run.throttle_wait_seconds = counted[1] + client.throttle_wait_seconds
    SyncRun.objects.filter(pk=run.pk).update(
        requests=run.requests, throttle_wait_seconds=run.throttle_wait_seconds
    )


def _choose_mode(run: SyncRun) -> None:
    reason = "Asked for a full reconciliation." if run.full else run.setting.needs_full_sync()
    run.mode = SyncRun.Mode.FULL if reason else SyncRun.Mode.DELTA
    run.mode_reason = reason or "Changes since the last sync."
    run.save(update_fields=["mode", "mode_reason"])


def _run(
    run: SyncRun,
    client: DataverseClient,
    progress,
    deadline: float | None,
    after_page: Callable[[], None],
) -> None:
    setting = run.setting
    # Loaded here: the planning thread must not query the database.
    company = setting.company
    mapping = Mapping.for_setting(setting)
    mapping.read_names_with(_name_reader(client))
    resuming = bool(run.next_page_url) or run.read_complete
    if not resuming:
        _choose_mode(run)
    base_requests, base_wait = run.requests, run.throttle_wait_seconds

    def fetch_and_map(url: str, track_changes: bool):
        for page in client.pages(url, track_changes=track_changes):
            yield page, mapping.map_page(page.rows)

    def plan_and_prepare(mapped: list[MappedRecord], candidates: Candidates, full: bool) -> Plan:
        plan = plan_page(company, mapped, mapping, candidates, create_users=setting.create_users)
        # The records a full read has seen, but for the users it creates: those are known
        # present by their change record (see _plan_missing).
        seen = []
        if full:
            at = NewUser.INDEX[plan.link]
            created = {user.values[at] for user in plan.creates}
            seen = [m.record_id for m in mapped if m.record_id and m.record_id not in created]
        plan.prepare(run.pk, seen, connection)
        return plan

    transactions = PageTransactions()

    def write(page: Page, plan: Plan) -> None:
        with transactions.page(last=not page.next_link):
            apply_plan(
                run,
                plan,
                page,
                requests=base_requests + client.requests,
                throttle_wait=base_wait + client.throttle_wait_seconds,
            )
        after_page()
        if progress:
            progress(run)
        if deadline and page.next_link and time.monotonic() >= deadline:
            raise SliceEnded

    def read(url: str, *, full: bool, track_changes: bool = False) -> None:
        pages = fetch_and_map(url, track_changes)
        # Fetch and map the next page while this one is written (SQLite and the socket
        # release the GIL while they work). Not with a delegated sign-in: its token refresh
        # writes the token cache to the database, which belongs to this thread.
        if setting.credential_type != setting.CredentialType.DELEGATED:
            pages = Prefetched(pages)
        link = mapping.source.link_field
        # Each page is matched before the page ahead of it is written, and planned in a
        # second thread while it is. Should that write touch anything the match looked at,
        # the page is matched and planned again: the result is always what matching after
        # the write would have given.
        unwritten: tuple[Page, Plan] | None = None
        with ThreadPoolExecutor(1, thread_name_prefix="sync-plan") as planner, closing(pages):
            try:
                while True:
                    # Pages written while the next is at hand share a transaction; it is
                    # committed before waiting on Dynamics, so as not to keep the database
                    # locked meanwhile.
                    if not getattr(pages, "ready", bool)():
                        transactions.commit()
                    if (item := next(pages, None)) is None:
                        break
                    page, mapped = item
                    del item
                    candidates = match_page(company, mapped, link, page.deleted_ids)
                    planned = planner.submit(plan_and_prepare, mapped, candidates, full)
                    before, unwritten = unwritten, None
                    if before:
                        write(*before)
                    plan = planned.result()
                    if before and not candidates.keys.isdisjoint(before[1].written):
                        candidates = match_page(company, mapped, link, page.deleted_ids)
                        plan = plan_and_prepare(mapped, candidates, full)
                    unwritten = page, plan
                    # Freeing the page written and this page's mapped records (hundreds of
                    # thousands of objects) is Python work: left to the planning thread.
                    done = [before, mapped, candidates]
                    before = mapped = candidates = None
                    planner.submit(done.clear)
            finally:
                # The last page; or, when reading the next one failed, the page before it,
                # so that a retry resumes after it.
                if unwritten:
                    write(*unwritten)
                transactions.commit()

    if run.mode == SyncRun.Mode.DELTA and not run.read_complete:
        try:
            read(run.next_page_url or setting.delta_link, full=False)
        except DeltaExpired:
            run.mode, run.mode_reason = (
                SyncRun.Mode.FULL,
                ("Dynamics no longer holds the changes since the last sync; reading everything."),
            )
            run.next_page_url = ""
            run.save(update_fields=["mode", "mode_reason", "next_page_url"])
            setting.forget_delta()

    if run.mode == SyncRun.Mode.FULL and not run.read_complete:
        url = run.next_page_url
        if not url:
            setting.change_tracking = client.change_tracking_enabled(mapping.source.logical_name)
            setting.save(update_fields=["change_tracking"])
            url = client.collection_url(mapping.source.key, select=mapping.columns)
        read(url, full=True, track_changes=bool(setting.change_tracking))

    _settle(run, full=run.mode == SyncRun.Mode.FULL)
    if not run.dry_run:
        _keep_delta(run, client, mapping)


def _keep_delta(run: SyncRun, client: DataverseClient, mapping: Mapping) -> None:
    """Where the next delta sync starts: Dataverse's delta link, or a modifiedon poll."""
    setting = run.setting
    if setting.change_tracking and run.new_delta_link:
        setting.delta_link = run.new_delta_link
    else:
        since = (run.started_at - POLL_OVERLAP).strftime("%Y-%m-%dT%H:%M:%SZ")
        setting.delta_link = client.collection_url(
            mapping.source.key, select=mapping.columns, filter=f"modifiedon ge {since}"
        )
    setting.delta_fingerprint = mapping.fingerprint
    update = ["delta_link", "delta_fingerprint"]
    if run.mode == SyncRun.Mode.FULL:
        setting.last_full_sync_at = run.started_at
        update.append("last_full_sync_at")
    setting.save(update_fields=update)


def finish_run(run: SyncRun, *, error: str = "") -> None:
    now = timezone.now()
    run.status = SyncRun.Status.FAILED if error else SyncRun.Status.SUCCEEDED
    run.error = error
    run.finished_at = now
    run.save(update_fields=["status", "error", "finished_at"])
    setting = DynamicsCrmSetting.objects.get(pk=run.setting_id)
    run.setting = setting
    if run.dry_run and not error:
        return
    setting.status = setting.Status.ERROR if error else setting.Status.OK
    setting.last_error = error
    setting.last_sync_at = now
    # A transient failure of a background run is retried from its checkpoint; only a run
    # that won't be retried counts as failed.
    run.will_retry = (
        bool(error)
        and run.retryable
        and run.attempt < SyncRun.MAX_ATTEMPTS
        and (run.trigger not in (SyncRun.Trigger.COMMAND_LINE, SyncRun.Trigger.LOOKUP))
    )
    if error and not run.will_retry:
        setting.consecutive_failures += 1
        if (
            setting.consecutive_failures >= setting.MAX_CONSECUTIVE_FAILURES
            and not setting.schedule_paused
        ):
            setting.schedule_paused = True
            transaction.on_commit(lambda: notifications.schedule_paused(setting))
        else:
            transaction.on_commit(lambda: notifications.run_failed(run))
    elif not error:
        setting.consecutive_failures = 0
    setting.save(
        update_fields=[
            "status",
            "last_error",
            "last_sync_at",
            "consecutive_failures",
            "schedule_paused",
            "updated_at",
        ]
    )
    log = logger.warning if error else logger.info
    log(
        "Sync %s of %s %s: %s",
        run.pk,
        run.company.slug,
        run.status,
        error or ", ".join(f"{n} {getattr(run, n)}" for n in SyncRun.COUNTERS),
    )
