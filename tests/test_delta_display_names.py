"""The department is the business unit's name, which Dataverse gives as the lookup's
formatted value. Whether delta pages carry formatted values is not documented (the
simulator's don't), so where a page lacks the name the sync reads `businessunits` itself:
once per run at most, and not at all while pages carry the names."""

import pytest

from learnexa.accounts.models import User
from learnexa.dynamics_crm.mapping import Mapping, Scope
from learnexa.dynamics_crm.models import SyncChange, SyncRun
from learnexa.dynamics_crm.sync import execute_run
from learnexa.dynamics_crm.sync import run as run_module


def sync(setting, *, full=False) -> SyncRun:
    run = SyncRun.objects.create(
        setting=setting, company=setting.company, trigger=SyncRun.Trigger.COMMAND_LINE, full=full
    )
    run = execute_run(run)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    return run


def unit_names(simulator) -> dict[str, str]:
    table = simulator.store.businessunits
    return {row[0]: table.value(row, "name") for row in table.rows.values()}


def businessunit_requests(simulator) -> list[dict]:
    return [e for e in simulator.request_log() if "/businessunits" in e["path"]]


def a_unit(simulator, name: str = "Engineering") -> str:
    return next(guid for guid, unit in unit_names(simulator).items() if unit == name)


@pytest.mark.django_db
def test_a_user_created_by_a_delta_gets_the_department(setting, simulator):
    first = sync(setting)
    assert first.mode == SyncRun.Mode.FULL
    simulator.clear_request_log()
    record_id = simulator.create_user(
        firstname="Nia",
        lastname="Okafor",
        internalemailaddress="nia.okafor@contoso.com",
        _businessunitid_value=a_unit(simulator),
    )

    delta = sync(setting)

    assert delta.mode == SyncRun.Mode.DELTA and delta.created == 1
    assert User.objects.get(dynamics_systemuser_id=record_id).department == "Engineering"
    assert len(businessunit_requests(simulator)) == 1


@pytest.mark.django_db
def test_one_businessunits_request_per_run_whatever_the_records(settings, setting, simulator):
    settings.LEARNEXA_DYNAMICS_PAGE_SIZE = 2  # several delta pages
    sync(setting)
    units = list(unit_names(simulator))
    created = [
        simulator.create_user(
            firstname="New",
            lastname=str(n),
            internalemailaddress=f"new.{n}@contoso.com",
            _businessunitid_value=units[n % len(units)],
        )
        for n in range(7)
    ]
    moved = next(
        u for u in User.objects.filter(company=setting.company) if u.department != "Engineering"
    )
    simulator.update_user(
        str(moved.dynamics_systemuser_id), _businessunitid_value=a_unit(simulator)
    )
    simulator.clear_request_log()

    delta = sync(setting)

    assert delta.mode == SyncRun.Mode.DELTA and delta.pages > 3
    assert (delta.created, delta.updated) == (7, 1)
    names = unit_names(simulator)
    for n, record_id in enumerate(created):
        user = User.objects.get(dynamics_systemuser_id=record_id)
        assert user.department == names[units[n % len(units)]]
    moved.refresh_from_db()
    assert moved.department == "Engineering"
    assert len(businessunit_requests(simulator)) == 1

    # The names are the run's: the next run reads them again, once.
    simulator.create_user(
        firstname="Later", lastname="One", internalemailaddress="later@contoso.com"
    )
    simulator.clear_request_log()
    assert sync(setting).created == 1
    assert len(businessunit_requests(simulator)) == 1


def page_requests(simulator) -> list[dict]:
    return [e for e in simulator.request_log() if "/systemusers" in e["path"]]


def with_formatted_values(entry: dict) -> bool:
    return "odata.include-annotations" in entry["prefer"]


@pytest.mark.django_db
def test_a_full_read_reads_the_names_once_and_then_asks_pages_without_them(
    settings, setting, simulator
):
    """Formatted values make every page larger and slower to build and to read: a full
    read reads the business units' names beside its first page, and asks for the pages
    after them without formatted values."""
    settings.LEARNEXA_DYNAMICS_PAGE_SIZE = 50
    simulator.clear_request_log()

    first = sync(setting)

    assert first.pages > 3
    assert len(businessunit_requests(simulator)) == 1
    pages = page_requests(simulator)
    assert len(pages) == first.pages
    # Pages asked before the names are read carry formatted values; once a page is asked
    # without, so is every page after it. Which page that is depends on timing (the next
    # test takes timing out), the departments don't.
    carried = [with_formatted_values(entry) for entry in pages]
    assert carried == sorted(carried, reverse=True)
    names = set(unit_names(simulator).values())
    departments = set(
        User.objects.filter(company=setting.company).values_list("department", flat=True)
    )
    assert departments == names

    # A full read again: the same names, once, and every user unchanged.
    simulator.clear_request_log()
    again = sync(setting, full=True)
    assert again.mode == SyncRun.Mode.FULL and again.unchanged == first.created
    assert len(businessunit_requests(simulator)) == 1


@pytest.mark.django_db
def test_once_the_names_are_read_no_page_carries_formatted_values(
    monkeypatch, settings, setting, simulator
):
    """What is asked beside the read is answered before it starts: every page then comes
    without formatted values, and the departments are still the units' names."""

    monkeypatch.setattr(run_module, "_beside", run_module._answered)
    settings.LEARNEXA_DYNAMICS_PAGE_SIZE = 50
    simulator.clear_request_log()

    run = sync(setting)

    pages = page_requests(simulator)
    assert run.pages > 3 and len(pages) == run.pages
    assert not any(with_formatted_values(entry) for entry in pages)
    assert len(businessunit_requests(simulator)) == 1
    departments = set(
        User.objects.filter(company=setting.company).values_list("department", flat=True)
    )
    assert departments == set(unit_names(simulator).values())


@pytest.mark.django_db
def test_a_full_read_without_access_to_businessunits_keeps_asking_for_the_names(
    settings, setting, simulator
):
    settings.LEARNEXA_DYNAMICS_PAGE_SIZE = 50
    simulator.set_read_privilege("businessunit", False)
    simulator.clear_request_log()

    run = sync(setting)

    pages = page_requests(simulator)
    assert run.pages > 3 and len(pages) == run.pages
    assert all(with_formatted_values(entry) for entry in pages)
    departments = set(
        User.objects.filter(company=setting.company).values_list("department", flat=True)
    )
    assert departments == set(unit_names(simulator).values())


@pytest.mark.django_db
def test_a_delta_without_the_names_and_without_access_to_businessunits(setting, simulator):
    """A role that may not read business units: the run goes on, a new user gets no
    department yet, and nobody's department is wiped, even where the admin chose that an
    empty value in Dynamics clears the one here."""
    setting.refresh_from_db()
    setting.field_mapping = {"department": {"clear": True}}
    setting.save()
    sync(setting)
    simulator.set_read_privilege("businessunit", False)
    existing = User.objects.filter(company=setting.company).exclude(department="").first()
    simulator.update_user(str(existing.dynamics_systemuser_id), jobtitle="Head of Learning")
    new_id = simulator.create_user(
        firstname="Nia", lastname="Okafor", internalemailaddress="nia.okafor@contoso.com"
    )
    simulator.clear_request_log()

    run = sync(setting)

    assert run.mode == SyncRun.Mode.DELTA and (run.created, run.updated) == (1, 1)
    department = existing.department
    existing.refresh_from_db()
    assert existing.job_title == "Head of Learning" and existing.department == department
    change = run.changes.get(user=existing, action=SyncChange.Action.UPDATED)
    assert "department" not in change.fields
    assert User.objects.get(dynamics_systemuser_id=new_id).department == ""
    assert len(businessunit_requests(simulator)) == 1  # tried once, not per record


def test_pages_carry_formatted_values_until_the_names_are_read_and_after_one_is_missed():
    unit = "bb8d48ae-9d44-406d-92da-387b96b32301"
    readable = {"businessunit": True}

    def read(entity_set, columns):
        if not readable["businessunit"]:
            return None
        return [{"businessunitid": unit, "name": "Engineering"}]

    mapping = Mapping()
    assert mapping.wants_formatted_values()  # no way to read names at all
    mapping.read_names_with(read)
    assert mapping.wants_formatted_values()  # not read yet
    mapping.read_lookup_names()
    assert not mapping.wants_formatted_values()

    record = {
        "systemuserid": "9025bbf4-3430-4d0c-bfcf-16f0bf7fbc80",
        "internalemailaddress": "a@contoso.com",
        "_businessunitid_value": unit,
    }
    assert mapping.map(record).fields["department"] == "Engineering"
    assert not mapping.wants_formatted_values()
    # A unit added since the names were read: the rest of the run's pages carry them.
    added = mapping.map({**record, "_businessunitid_value": "0c7a6a1e-5a57-4e2b-9d65-33d0c7e1f00d"})
    assert added.unknown == ("department",)
    assert mapping.wants_formatted_values()

    # A lookup whose names the sync doesn't read itself: always carried by the pages.
    manager = Mapping.from_config({"job_title": {"column": "_parentsystemuserid_value"}})
    manager.read_names_with(read)
    manager.read_lookup_names()
    assert manager.wants_formatted_values()
    # Where the sync may not read business units, pages always carry them.
    readable["businessunit"] = False
    denied = Mapping()
    denied.read_names_with(read)
    denied.read_lookup_names()
    assert denied.wants_formatted_values()
    # A mapping that reads no lookup never needs them.
    plain = Mapping.from_config({"department": None})
    plain.read_names_with(read)
    assert not plain.wants_formatted_values()


def test_leaving_the_scope_names_the_unit_from_the_names_read_when_the_page_lacks_it():
    chosen, other = "bb8d48ae-9d44-406d-92da-387b96b32301", "0c7a6a1e-5a57-4e2b-9d65-33d0c7e1f00d"

    def read(entity_set, columns):
        return [{"businessunitid": other, "name": "Sales"}]

    mapping = Mapping()
    mapping.scope = Scope.from_config([chosen], [])
    mapping.read_names_with(read)
    record = {
        "systemuserid": "9025bbf4-3430-4d0c-bfcf-16f0bf7fbc80",
        "internalemailaddress": "a@contoso.com",
        "_businessunitid_value": other,
    }
    before = mapping.map(record)  # names not read: the unit's id
    mapping.read_lookup_names()
    after = mapping.map(record)

    assert before.disabled_reason.startswith(f"Out of the sync's scope: business unit {other} ")
    assert after.disabled_reason.startswith("Out of the sync's scope: business unit Sales ")
    assert not after.is_enabled and after.out_of_scope


def test_mapping_fills_missing_names_only_when_needed():
    reads = []
    names = {"bb8d48ae-9d44-406d-92da-387b96b32301": "Engineering"}

    def read(entity_set, columns):
        reads.append((entity_set, columns))
        return [{"businessunitid": guid, "name": name} for guid, name in names.items()]

    mapping = Mapping()
    mapping.read_names_with(read)
    record = {
        "systemuserid": "9025bbf4-3430-4d0c-bfcf-16f0bf7fbc80",
        "internalemailaddress": "a@contoso.com",
        "_businessunitid_value": "bb8d48ae-9d44-406d-92da-387b96b32301",
    }
    annotated = {**record, "_businessunitid_value@OData.Community.Display.V1.FormattedValue": "R&D"}

    assert mapping.map_page([annotated])[0].fields["department"] == "R&D"
    assert reads == []
    assert mapping.map_page([record, record])[0].fields["department"] == "Engineering"
    assert mapping.map_page([record])[0].fields["department"] == "Engineering"
    assert reads == [("businessunits", ["businessunitid", "name"])]
    unknown = mapping.map(
        {**record, "_businessunitid_value": "00000000-0000-0000-0000-00000000beef"}
    )
    assert unknown.fields["department"] == "" and unknown.unknown == ("department",)
