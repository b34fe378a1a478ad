"""Planning on its own: mapped records and the users they matched in, a Plan out.

Everything is built in memory (no simulator, no database): planning is Python work only.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX

from learnexa.accounts.models import Company, User
from learnexa.dynamics_crm.mapping import MappedRecord, Mapping
from learnexa.dynamics_crm.sync.match import Candidates
from learnexa.dynamics_crm.sync.plan import (
    ADMIN_LEFT_ACTIVE,
    SITE_ADMIN_REASON,
    SWITCHED_OFF,
    Action,
    NewUser,
    plan_page,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
COMPANY = Company(pk=7, slug="acme", name="Acme")
LINK = "dynamics_systemuser_id"


def guid(n: int) -> str:
    return str(uuid.UUID(int=n))


def record(n: int, mapping: Mapping, *, email: str = "", enabled: bool = True, **fields):
    """A mapped record as map_page gives it: every mapped field, in the mapping's order."""
    email = email or f"person{n}@example.com"
    return MappedRecord(
        record_id=guid(n),
        email=email,
        email_key=email.lower(),
        fields={rule.field: fields.get(rule.field, "") for rule in mapping.rules},
        is_enabled=enabled,
        disabled_reason="" if enabled else "Disabled in Dynamics.",
    )


def user(pk: int, *, linked_to: int | None = None, **values) -> User:
    """A platform user as matching loads it (its GUIDs as text)."""
    values.setdefault("email", f"person{linked_to or pk}@example.com")
    return User(
        pk=pk,
        company_id=COMPANY.pk,
        dynamics_systemuser_id=guid(linked_to) if linked_to else None,
        **values,
    )


def candidates(*, by_id=(), by_email=(), deleted=()) -> Candidates:
    return Candidates(
        by_id={getattr(u, LINK): u for u in by_id},
        by_entra={},
        by_email={u.email.lower(): u for u in by_email},
        deleted=list(deleted),
        keys=set(),
    )


def plan(records, found=None, mapping=None, **options):
    mapping = mapping or Mapping()
    return plan_page(COMPANY, records, mapping, found or candidates(), now=NOW, **options)


def actions(plan) -> list[tuple[str, str, bool]]:
    return [(c.action, c.reason, c.pending) for c in plan.changes]


def test_a_record_nobody_matches_creates_a_user():
    mapping = Mapping()
    result = plan([record(1, mapping, first_name="Ann", job_title="Pilot")], mapping=mapping)

    [created] = result.creates
    values = dict(zip(NewUser.FIELDS, created.values, strict=True))
    assert values["email"] == "person1@example.com"
    assert values[LINK] == guid(1)
    assert values["company"] == COMPANY.pk
    assert values["created_source"] == User.Source.DYNAMICS_CRM
    assert values["created_at"] == values["updated_at"] == NOW
    assert (values["first_name"], values["job_title"], values["city"]) == ("Ann", "Pilot", "")
    assert values["password"].startswith(UNUSABLE_PASSWORD_PREFIX)
    assert len(values["password"]) > len(UNUSABLE_PASSWORD_PREFIX) + 20
    [change] = result.changes
    assert change.action == Action.CREATED and change.user is created
    # Only the fields the record sets.
    assert change.fields == {"first_name": [None, "Ann"], "job_title": [None, "Pilot"]}
    assert result.counts[Action.CREATED] == 1 and not result.updates


def test_users_are_not_created_when_creating_is_off_or_the_record_is_disabled():
    mapping = Mapping()
    off = plan([record(1, mapping)], mapping=mapping, create_users=False)
    disabled = plan([record(2, mapping, enabled=False)], mapping=mapping)

    assert not off.creates and not disabled.creates
    assert actions(off) == [(Action.SKIPPED, "Creating users is switched off.", False)]
    assert actions(disabled) == [(Action.SKIPPED, "Disabled in Dynamics. Not created.", False)]


def test_an_update_changes_only_the_fields_that_differ():
    mapping = Mapping()
    kim = user(10, linked_to=1, first_name="Kim", job_title="Clerk", city="Oslo")
    changed = record(1, mapping, first_name="Kim", job_title="Manager", city="Oslo")

    result = plan([changed], candidates(by_id=[kim]), mapping)

    assert result.updates == {("job_title",): [kim]}
    assert kim.job_title == "Manager" and kim.updated_at == NOW
    [change] = result.changes
    assert (change.action, change.user, change.fields) == (
        Action.UPDATED,
        kim,
        {"job_title": ["Clerk", "Manager"]},
    )
    assert result.counts[Action.UPDATED] == 1 and result.counts["unchanged"] == 0


def test_a_user_matched_by_email_is_linked_to_the_record():
    mapping = Mapping()
    kim = user(10, email="Kim@Example.com", first_name="Kim")
    result = plan(
        [record(1, mapping, email="kim@example.com", first_name="Kim")],
        candidates(by_email=[kim]),
        mapping,
    )

    [(fields, users)] = result.updates.items()
    assert fields == (LINK, "email") and users == [kim]
    assert kim.dynamics_systemuser_id == guid(1) and kim.email == "kim@example.com"
    assert result.changes[0].fields[LINK] == [None, guid(1)]


def test_a_user_already_in_step_is_unchanged():
    mapping = Mapping()
    kim = user(10, linked_to=1, first_name="Kim", job_title="Clerk")

    result = plan(
        [record(1, mapping, first_name="Kim", job_title="Clerk")], candidates(by_id=[kim]), mapping
    )

    assert result.counts["unchanged"] == 1
    assert not result.updates and not result.changes and not result.creates


@pytest.mark.parametrize("clear", [False, True])
def test_an_empty_value_in_dynamics_clears_a_field_only_where_the_mapping_says_so(clear):
    mapping = Mapping.from_config({"city": {"clear": True}}) if clear else Mapping()
    kim = user(10, linked_to=1, first_name="Kim", city="Oslo")

    result = plan([record(1, mapping, first_name="Kim")], candidates(by_id=[kim]), mapping)

    if clear:
        assert result.updates == {("city",): [kim]} and kim.city == ""
        assert result.changes[0].fields == {"city": ["Oslo", ""]}
    else:
        assert not result.updates and kim.city == "Oslo"
        assert result.counts["unchanged"] == 1


def test_a_disabled_record_deactivates_its_user_once_the_run_settles():
    mapping = Mapping()
    kim = user(10, linked_to=1, is_active=True)

    result = plan([record(1, mapping, enabled=False)], candidates(by_id=[kim]), mapping)

    assert actions(result) == [(Action.DEACTIVATED, "Disabled in Dynamics.", True)]
    assert kim.is_active  # applied, or held, when the run settles
    assert result.counts[Action.DEACTIVATED] == 0 and not result.updates


@pytest.mark.parametrize("switch", [True, False])
def test_leaving_the_scope_deactivates_only_with_the_companys_switch_on(switch):
    mapping = Mapping()
    mapping.deactivate_missing = switch
    kim = user(10, linked_to=1, is_active=True)
    out = record(1, mapping, enabled=False)
    out.out_of_scope, out.disabled_reason = True, "Out of the sync's scope."

    result = plan([out], candidates(by_id=[kim]), mapping)

    if switch:
        assert actions(result) == [(Action.DEACTIVATED, "Out of the sync's scope.", True)]
    else:
        reason = "Out of the sync's scope" + SWITCHED_OFF
        assert actions(result) == [(Action.SKIPPED, reason, False)]
        assert result.counts[Action.SKIPPED] == 1


def test_users_linked_to_records_deleted_in_dynamics_are_deactivated():
    mapping = Mapping()
    gone = user(10, linked_to=1, is_active=True)

    result = plan([], candidates(deleted=[gone]), mapping)

    assert [(c.user, c.action, c.reason, c.pending) for c in result.changes] == [
        (gone, Action.DEACTIVATED, "Deleted in Dynamics.", True)
    ]


def test_only_users_the_sync_deactivated_are_reactivated():
    mapping = Mapping()
    by_sync = user(10, linked_to=1, is_active=False, deactivated_by_sync_at=NOW)
    by_admin = user(11, linked_to=2, is_active=False, deactivated_by_sync_at=None)

    result = plan(
        [record(1, mapping), record(2, mapping)], candidates(by_id=[by_sync, by_admin]), mapping
    )

    assert result.updates == {("deactivated_by_sync_at", "is_active"): [by_sync]}
    assert by_sync.is_active and by_sync.deactivated_by_sync_at is None
    assert not by_admin.is_active  # an admin's suspension stays
    [change] = result.changes
    assert (change.user, change.action, change.fields) == (
        by_sync,
        Action.REACTIVATED,
        {"is_active": [False, True]},
    )
    assert result.counts[Action.REACTIVATED] == 1 and result.counts["unchanged"] == 1


def test_a_record_matching_a_site_admin_leaves_them_alone():
    mapping = Mapping()
    admin = user(10, email="boss@example.com", first_name="Old", is_site_admin=True)

    result = plan(
        [record(1, mapping, email="boss@example.com", first_name="New", enabled=False)],
        candidates(by_email=[admin]),
        mapping,
    )

    assert not result.updates and not result.creates
    assert admin.first_name == "Old" and admin.dynamics_systemuser_id is None
    assert actions(result) == [
        (Action.SKIPPED, SITE_ADMIN_REASON, False),
        (Action.SKIPPED, "Disabled in Dynamics." + ADMIN_LEFT_ACTIVE, False),
    ]
    assert result.counts[Action.SKIPPED] == 1  # one record, one skip


def test_a_site_admin_deleted_in_dynamics_is_left_active():
    admin = user(10, linked_to=1, is_active=True, is_site_admin=True)

    result = plan([], candidates(deleted=[admin]))

    assert actions(result) == [(Action.SKIPPED, "Deleted in Dynamics." + ADMIN_LEFT_ACTIVE, False)]


def test_two_records_with_one_email_create_one_user_and_report_the_other():
    mapping = Mapping()
    first = record(1, mapping, email="kim@example.com")
    second = record(2, mapping, email="KIM@example.com")

    result = plan([first, second], mapping=mapping)

    assert len(result.creates) == 1
    assert result.creates[0].values[NewUser.INDEX[LINK]] == guid(1)
    assert result.changes[1].action == Action.SKIPPED
    assert result.changes[1].systemuser_id == guid(2)
    assert "same email comes first" in result.changes[1].reason


def test_a_record_whose_email_belongs_to_a_user_linked_elsewhere_is_reported():
    mapping = Mapping()
    kim = user(10, linked_to=1, email="kim@example.com", first_name="Kim")

    result = plan(
        [record(2, mapping, email="kim@example.com", first_name="Impostor")],
        candidates(by_email=[kim]),
        mapping,
    )

    assert not result.updates and not result.creates and kim.first_name == "Kim"
    [change] = result.changes
    assert change.action == Action.SKIPPED and "two Dynamics users share it" in change.reason


def test_two_records_matching_the_same_user_update_it_once():
    mapping = Mapping()
    kim = user(10, linked_to=1, email="kim@example.com", first_name="Kim")
    same = record(1, mapping, email="kim@example.com", first_name="Kim")
    again = record(1, mapping, email="kim@example.com", first_name="Other")

    result = plan([same, again], candidates(by_id=[kim], by_email=[kim]), mapping)

    assert kim.first_name == "Kim" and not result.updates
    assert result.changes[-1].action == Action.SKIPPED
    assert "matched the same platform user" in result.changes[-1].reason


def test_an_email_taken_by_another_user_is_not_changed():
    mapping = Mapping()
    kim = user(10, linked_to=1, email="kim@example.com")
    other = user(11, email="new@example.com")

    result = plan(
        [record(1, mapping, email="new@example.com")],
        candidates(by_id=[kim], by_email=[other]),
        mapping,
    )

    assert kim.email == "kim@example.com" and not result.updates
    assert actions(result) == [
        (
            Action.SKIPPED,
            "Email not changed: new@example.com belongs to another platform user.",
            False,
        )
    ]


def test_a_field_set_only_on_create_is_set_when_creating_and_never_updated():
    mapping = Mapping.from_config({"job_title": {"policy": "on_create"}})
    kim = user(10, linked_to=1, job_title="Clerk")

    created = plan([record(2, mapping, job_title="Pilot")], mapping=mapping)
    updated = plan([record(1, mapping, job_title="Pilot")], candidates(by_id=[kim]), mapping)

    values = dict(zip(NewUser.FIELDS, created.creates[0].values, strict=True))
    assert values["job_title"] == "Pilot"
    assert kim.job_title == "Clerk" and not updated.updates
    assert updated.counts["unchanged"] == 1


def test_a_field_set_only_while_empty_fills_it_and_then_keeps_it():
    mapping = Mapping.from_config({"city": {"policy": "if_empty"}})
    empty = user(10, linked_to=1, city="")
    filled = user(11, linked_to=2, city="Oslo")

    result = plan(
        [record(1, mapping, city="Bergen"), record(2, mapping, city="Bergen")],
        candidates(by_id=[empty, filled]),
        mapping,
    )

    assert result.updates == {("city",): [empty]}
    assert (empty.city, filled.city) == ("Bergen", "Oslo")
    assert result.counts[Action.UPDATED] == 1 and result.counts["unchanged"] == 1
