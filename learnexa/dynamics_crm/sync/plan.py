"""Plan: a page's mapped records and the users they matched in, a Plan out.

Planning is Python work only, with no database access: what each record does to the
platform's users (create, update only the fields that changed, leave alone, deactivate,
reactivate, skip with a reason), as rows and change records for apply.py to write. The
pipeline runs it in a thread of its own while the page before is written.
"""

from __future__ import annotations

import base64
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.utils import timezone

from learnexa.accounts.models import Company, User

from ..mapping import MappedRecord, Mapping, Policy
from ..models import SyncChange

if TYPE_CHECKING:
    from learnexa.dataflow.bulk import Rows

    from .match import Candidates

Action = SyncChange.Action
SITE_ADMIN_REASON = "Matches a site admin; site admins are managed here, not by the sync."
ADMIN_LEFT_ACTIVE = (
    " Left active: a site admin is never deactivated by a sync; deactivate them by hand if needed."
)
SWITCHED_OFF = (
    "; left active because deactivating users deleted in Dynamics or out of scope is switched off."
)


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
    # The rows to insert, converted by apply.prepare_plan(); ids of new users are given at
    # insert.
    user_rows: Rows | None = None
    change_rows: Rows | None = None
    seen_rows: Rows | None = None
    # written_keys(), kept by apply.prepare_plan() so that the planning thread works it out.
    written: set = field(default_factory=set)
    # The company's switch: deactivate users deleted in Dynamics or out of scope.
    deactivate_missing: bool = True

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
