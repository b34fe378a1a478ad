"""The department is the business unit's name, which Dataverse gives as the lookup's
formatted value. Whether delta pages carry formatted values is not documented (the
simulator's don't), so where a page lacks the name the sync reads `businessunits` itself:
once per run at most, and not at all while pages carry the names."""

import pytest

from learnexa.accounts.models import User
from learnexa.dynamics_crm.mapping import Mapping
from learnexa.dynamics_crm.models import SyncChange, SyncRun
from learnexa.dynamics_crm.sync import execute_run


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


@pytest.mark.django_db
def test_a_full_read_whose_pages_carry_the_names_asks_nothing_more(settings, setting, simulator):
    settings.LEARNEXA_DYNAMICS_PAGE_SIZE = 50
    simulator.clear_request_log()

    first = sync(setting)
    again = sync(setting, full=True)

    assert first.pages > 3 and again.mode == SyncRun.Mode.FULL and again.unchanged
    assert businessunit_requests(simulator) == []
    names = set(unit_names(simulator).values())
    departments = set(
        User.objects.filter(company=setting.company).values_list("department", flat=True)
    )
    assert departments == names


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

    run = sync(setting)

    assert run.mode == SyncRun.Mode.DELTA and (run.created, run.updated) == (1, 1)
    department = existing.department
    existing.refresh_from_db()
    assert existing.job_title == "Head of Learning" and existing.department == department
    change = run.changes.get(user=existing, action=SyncChange.Action.UPDATED)
    assert "department" not in change.fields
    assert User.objects.get(dynamics_systemuser_id=new_id).department == ""
    assert len(businessunit_requests(simulator)) == 1  # tried once, not per record


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
