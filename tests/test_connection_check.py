"""Test connection: each step in turn, the failing one explained."""

import pytest
from django.urls import reverse


@pytest.fixture
def admin_client(client, site_admin):
    client.force_login(site_admin)
    return client


@pytest.mark.django_db
def test_every_step_passes_against_a_working_organization(admin_client, setting):
    page = admin_client.post(reverse("dynamics_crm:test_connection")).content.decode()
    for step in (
        "Sign in to Entra ID",
        "Reach Dynamics 365 (WhoAmI)",
        "Read users",
        "Change tracking",
    ):
        assert f"✓ {step}" in page
    assert "Everything a sync needs works." in page


@pytest.mark.django_db
def test_a_wrong_secret_stops_at_sign_in_and_says_what_to_fix(admin_client, setting):
    setting.set_client_secret("wrong")
    setting.save(update_fields=["client_secret_encrypted"])
    page = admin_client.post(reverse("dynamics_crm:test_connection")).content.decode()
    assert "✗ Sign in to Entra ID" in page
    assert "The client secret is wrong" in page
    assert "✓" not in page.split("<ol")[1].split("</ol>")[0]


@pytest.mark.django_db
def test_an_application_user_without_read_privilege_fails_at_reading(
    admin_client, setting, simulator
):
    simulator.set_read_privilege("systemuser", False)
    page = admin_client.post(reverse("dynamics_crm:test_connection")).content.decode()
    assert "✓ Reach Dynamics 365 (WhoAmI)" in page
    assert "✗ Read users" in page and "security role with organization-level Read on Users" in page
    assert "is missing prvReadUser privilege" in page  # Dynamics' own words, passed on


@pytest.mark.django_db
def test_change_tracking_off_is_explained(
    admin_client, make_simulator, company, connect, site_admin
):
    setting = connect(company, make_simulator(change_tracking=False))
    page = admin_client.post(reverse("dynamics_crm:test_connection")).content.decode()
    assert "✓ Change tracking" in page and "Off for the systemuser table" in page
    assert setting.pk
