"""The whole path a site admin takes: sign in, connect, save → a job → the worker → users."""

import pytest
from django.core.management import call_command
from django.urls import reverse

from learnexa.accounts.models import User
from learnexa.dynamics_crm.models import DynamicsCrmSetting, SyncRun

ADMIN_PASSWORD = "a-long-test-password-1"  # the site_admin fixture's


@pytest.mark.django_db(transaction=True)
def test_configure_enqueue_work_and_see_the_users(client, site_admin, simulator, connection_form):
    info = simulator.info
    assert client.login(username="admin@acme.test", password=ADMIN_PASSWORD)

    page = client.get(reverse("dynamics_crm:integration"))
    assert page.status_code == 200
    assert b"Organization URI" in page.content and b"Client secret" in page.content

    response = client.post(
        reverse("dynamics_crm:integration"),
        connection_form(
            **{
                "organization_uri": info["organization_uri"],
                "tenant_id": info["tenant_id"],
                "client_id": info["client_id"],
                "client_secret": info["client_secret"],
                "authority_host": info["authority_host"],
                "sync_frequency": "daily",
            }
        ),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    run = SyncRun.objects.get(company=site_admin.company)
    assert run.status == SyncRun.Status.QUEUED and run.task_id
    assert not User.objects.filter(created_source=User.Source.DYNAMICS_CRM).exists()

    call_command("worker", "--batch", "--no-startup-delay", "--interval", "0")

    run.refresh_from_db()
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.created > 100
    assert (
        User.objects.filter(
            company=site_admin.company, created_source=User.Source.DYNAMICS_CRM
        ).count()
        == run.created
    )

    status = client.get(reverse("dynamics_crm:run_status", args=[run.pk])).json()
    assert status["finished"] is True
    assert {k: status[k] for k in SyncRun.COUNTERS} == {
        k: getattr(run, k) for k in SyncRun.COUNTERS
    }

    users_page = client.get(reverse("manage_site:users"), {"source": "dynamics_crm"})
    assert f"{run.created} users".encode() in users_page.content
    assert b'data-source="dynamics_crm"' in users_page.content

    setting = DynamicsCrmSetting.objects.get(company=site_admin.company)
    assert setting.client_secret() == info["client_secret"]
    assert info["client_secret"] not in setting.client_secret_encrypted
