"""Who is synced (business units, conditions) and which column feeds which field, edited
with a preview on a real record."""

import pytest
from django.urls import reverse

from learnexa.accounts.models import User
from learnexa.dynamics_crm.mapping import Condition, Scope, map_systemuser
from learnexa.dynamics_crm.models import SyncRun
from learnexa.dynamics_crm.sync import execute_run


def sync(setting, full=False):
    run = SyncRun.objects.create(
        setting=setting, company=setting.company, trigger="manual", full=full
    )
    return execute_run(run)


def test_conditions_compare_like_dataverse_ignoring_case():
    record = {"address1_country": "France", "jobtitle": None, "isdisabled": False}
    assert Condition("address1_country", "eq", "FRANCE").matches(record)
    assert not Condition("address1_country", "ne", "france").matches(record)
    assert Condition("address1_country", "startswith", "fr").matches(record)
    assert Condition("jobtitle", "empty").matches(record)
    assert Condition("isdisabled", "eq", "false").matches(record)
    # A literal value: no wildcards, unlike Dataverse's contains().
    assert not Condition("address1_country", "contains", "fr_nce").matches(record)
    with pytest.raises(ValueError):
        Condition("bad column;", "eq", "x")
    with pytest.raises(ValueError):
        Condition("jobtitle", "like", "x")


def test_leaving_the_scope_counts_as_being_disabled():
    scope = Scope.from_config(
        [], [{"column": "address1_country", "operator": "eq", "value": "France"}]
    )
    assert "address1_country is 'France' is not true" in scope.excludes(
        {"address1_country": "Spain"}
    )
    assert scope.excludes({"address1_country": "france"}) == ""


@pytest.mark.django_db
def test_a_scope_by_business_unit_syncs_only_its_people_and_deactivates_who_leaves(
    setting, simulator
):
    units = {}
    for record in simulator.store.users():
        mapped = map_systemuser(record)
        if not mapped.skip_reason and mapped.is_enabled:
            units.setdefault(record["_businessunitid_value"], []).append(record)
    chosen, members = max(units.items(), key=lambda item: len(item[1]))
    setting.refresh_from_db()
    setting.scope_business_units = [chosen]
    setting.save(update_fields=["scope_business_units"])

    run = sync(setting)

    synced = User.objects.filter(company=setting.company)
    member_ids = {r["systemuserid"] for r in members}
    assert synced.exists() and {str(u.dynamics_systemuser_id) for u in synced} <= member_ids
    assert run.changes.filter(reason__startswith="Out of the sync's scope: business unit").exists()

    # Someone moves to another business unit: out of scope, so deactivated.
    mover = members[0]
    other = next(unit for unit in units if unit != chosen)
    simulator.store.update_user(mover["systemuserid"], _businessunitid_value=other)
    run = sync(setting)
    user = User.objects.get(company=setting.company, dynamics_systemuser_id=mover["systemuserid"])
    assert not user.is_active and run.deactivated == 1


@pytest.fixture
def admin_client(client, site_admin):
    client.force_login(site_admin)
    return client


def mapping_post(**overrides):
    data = {
        "source_table": "systemusers",
        "conditions": "",
        "first_name__column": "firstname",
        "first_name__policy": "always",
        "last_name__column": "lastname",
        "last_name__policy": "always",
        "job_title__column": "title",
        "job_title__fallback": "jobtitle",
        "job_title__policy": "always",
        "phone__column": "address1_telephone1",
        "phone__fallback": "mobilephone",
        "phone__policy": "always",
        "city__column": "address1_city",
        "city__policy": "if_empty",
        "country__column": "address1_country",
        "country__policy": "always",
        "employee_id__column": "employeeid",
        "employee_id__policy": "on_create",
        "department__column": "",
        "department__policy": "always",
        "action": "preview",
    }
    return {**data, **overrides}


@pytest.mark.django_db
def test_the_mapping_page_previews_a_real_record_without_saving(admin_client, setting, simulator):
    person = next(
        r for r in simulator.store.users() if r.get("title") and not map_systemuser(r).skip_reason
    )
    response = admin_client.post(
        reverse("dynamics_crm:mapping"), mapping_post(sample_email=person["internalemailaddress"])
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert person["title"] in page and person["internalemailaddress"] in page
    setting.refresh_from_db()
    assert setting.field_mapping == {}


@pytest.mark.django_db
def test_saving_the_mapping_and_scope_queues_a_full_reconciliation(
    admin_client, setting, simulator
):
    response = admin_client.post(
        reverse("dynamics_crm:mapping"),
        mapping_post(action="save", conditions="address1_country ne Atlantis"),
    )
    assert response.status_code == 302
    setting.refresh_from_db()
    assert setting.field_mapping["job_title"]["column"] == "title"
    assert setting.field_mapping["department"] is None
    assert setting.scope_conditions == [
        {"column": "address1_country", "operator": "ne", "value": "Atlantis"}
    ]
    run = SyncRun.objects.get(company=setting.company)
    assert run.full and run.status == SyncRun.Status.QUEUED


@pytest.mark.django_db
def test_an_unknown_column_is_refused_with_dataverses_words(admin_client, setting):
    response = admin_client.post(
        reverse("dynamics_crm:mapping"), mapping_post(action="save", city__column="address9_city")
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "Could not find a property named" in page and "address9_city" in page
    setting.refresh_from_db()
    assert setting.field_mapping == {} and not SyncRun.objects.exists()


@pytest.mark.django_db
def test_a_malformed_condition_says_what_is_wrong(admin_client, setting):
    response = admin_client.post(
        reverse("dynamics_crm:mapping"), mapping_post(action="save", conditions="jobtitle like x")
    )
    assert "Line 1: &#x27;like&#x27; is not an operator" in response.content.decode()


@pytest.mark.django_db
def test_contacts_as_the_source_create_update_and_deactivate_learners(setting, simulator):
    setting.refresh_from_db()
    setting.source_table = "contacts"
    setting.save(update_fields=["source_table"])
    contacts = [c for c in simulator.store.contacts_records() if c.get("emailaddress1")]
    active = [c for c in contacts if c["statecode"] == 0]

    run = sync(setting)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    users = User.objects.filter(company=setting.company)
    assert {u.email.lower() for u in users} == {c["emailaddress1"].lower() for c in active}
    assert all(u.dynamics_contact_id and u.dynamics_systemuser_id is None for u in users)
    first = User.objects.get(dynamics_contact_id=active[0]["contactid"])
    assert first.city == (active[0]["address1_city"] or "")

    # A contact changes, another becomes inactive, a new one arrives: one delta.
    simulator.store.update_contact(active[0]["contactid"], jobtitle="Head of Purchasing")
    simulator.store.update_contact(active[1]["contactid"], statecode=1, statuscode=2)
    simulator.store.create_contact(
        firstname="Noor", lastname="Haddad", emailaddress1="noor@partner.example"
    )
    delta = sync(setting)

    assert delta.mode == SyncRun.Mode.DELTA and delta.records == 3
    assert (delta.created, delta.updated, delta.deactivated) == (1, 1, 1)
    assert (
        User.objects.get(dynamics_contact_id=active[0]["contactid"]).job_title
        == "Head of Purchasing"
    )
    gone = User.objects.get(dynamics_contact_id=active[1]["contactid"])
    assert not gone.is_active
    assert delta.changes.filter(reason="Inactive in Dynamics.").count() == 1


@pytest.mark.django_db
def test_switching_the_source_resets_the_mapping_and_reconciles(admin_client, setting):
    setting.refresh_from_db()
    setting.field_mapping = {"job_title": {"column": "title"}}
    setting.save(update_fields=["field_mapping"])

    response = admin_client.post(
        reverse("dynamics_crm:mapping"), mapping_post(action="save", source_table="contacts")
    )

    assert response.status_code == 302
    setting.refresh_from_db()
    assert setting.source_table == "contacts" and setting.field_mapping == {}
    assert SyncRun.objects.get(company=setting.company).full


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["preview", "save"])
def test_a_huge_preview_email_is_refused_in_the_page_before_anything_is_sent(
    admin_client, setting, simulator, action
):
    huge = "a" * 100_000 + "@example.com"
    simulator.clear_request_log()
    response = admin_client.post(
        reverse("dynamics_crm:mapping"), mapping_post(sample_email=huge, action=action)
    )
    assert response.status_code == 200
    assert "an email has at most 254" in response.content.decode()
    # The business units are still read; no request carries the email.
    assert all("aaaa" not in str(entry) for entry in simulator.request_log())
    setting.refresh_from_db()
    assert setting.field_mapping == {}
