"""The `learnexa` command line, as scripts and later work rely on it."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from learnexa.accounts.models import Company, User
from learnexa.dynamics_crm.models import DynamicsCrmSetting

USER_KEYS = {
    "email",
    "first_name",
    "last_name",
    "job_title",
    "phone",
    "city",
    "country",
    "employee_id",
    "department",
    "is_active",
    "is_site_admin",
    "created_source",
    "dynamics_systemuser_id",
    "dynamics_contact_id",
    "entra_object_id",
    "deactivated_by_sync_at",
}
COUNT_KEYS = {"created", "updated", "unchanged", "deactivated", "skipped", "failed"}


def run(*args, stdin: str = "", monkeypatch=None) -> str:
    out = io.StringIO()
    if monkeypatch is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.mark.django_db
def test_company_and_site_admin_from_the_command_line(monkeypatch):
    run("company", "add", "globex", "--name", "Globex")
    assert Company.objects.get(slug="globex").name == "Globex"
    with pytest.raises(CommandError, match="already exists"):
        run("company", "add", "globex", "--name", "Again")

    run(
        "siteadmin",
        "add",
        "globex",
        "boss@globex.test",
        stdin="a-long-test-password-1\n",
        monkeypatch=monkeypatch,
    )
    admin = User.objects.get(email="boss@globex.test")
    assert admin.is_site_admin and admin.check_password("a-long-test-password-1")

    with pytest.raises(CommandError, match="No company with the slug 'nope'"):
        run(
            "siteadmin",
            "add",
            "nope",
            "x@y.test",
            stdin="a-long-test-password-1\n",
            monkeypatch=monkeypatch,
        )
    with pytest.raises(CommandError, match="too short"):
        run("siteadmin", "add", "globex", "b@globex.test", stdin="short\n", monkeypatch=monkeypatch)


@pytest.mark.django_db
def test_configure_sync_and_list_users(company, simulator, monkeypatch):
    info = simulator.info
    run(
        "dynamics",
        "configure",
        "acme",
        "--organization-uri",
        info["organization_uri"],
        "--tenant-id",
        info["tenant_id"],
        "--client-id",
        info["client_id"],
        "--authority-host",
        info["authority_host"],
        "--client-secret-stdin",
        stdin=info["client_secret"] + "\n",
        monkeypatch=monkeypatch,
    )
    setting = DynamicsCrmSetting.objects.get(company=company)
    assert setting.client_secret() == info["client_secret"]

    summary = json.loads(run("dynamics", "sync", "acme", "--json"))
    assert COUNT_KEYS <= set(summary)
    assert summary["status"] == "succeeded" and summary["created"] > 100

    users = json.loads(run("users", "list", "acme", "--json"))
    assert len(users) == summary["created"]
    assert all(set(u) == USER_KEYS for u in users)
    assert all(u["created_source"] == "dynamics_crm" and u["dynamics_systemuser_id"] for u in users)
    # What the sync keeps current is listed too, as the database holds it.
    stored = {
        user.email: (user.employee_id, user.department, user.job_title)
        for user in User.objects.filter(company=company)
    }
    assert any(u["department"] for u in users) and any(u["employee_id"] for u in users)
    assert all(
        (u["employee_id"], u["department"], u["job_title"]) == stored[u["email"]] for u in users
    )

    delta = json.loads(run("dynamics", "sync", "acme", "--json"))
    assert delta["mode"] == "delta" and delta["records"] == 0 and delta["requests"] == 1

    full = json.loads(run("dynamics", "sync", "acme", "--full", "--json"))
    assert (
        full["mode"] == "full" and full["unchanged"] == summary["created"] and full["created"] == 0
    )


@pytest.mark.django_db
def test_configure_refuses_an_http_organization_and_says_why(company, monkeypatch):
    with pytest.raises(CommandError, match="must start with https://"):
        run(
            "dynamics",
            "configure",
            "acme",
            "--organization-uri",
            "http://contoso.crm.dynamics.com",
            "--tenant-id",
            "contoso.onmicrosoft.com",
            "--client-id",
            "d0835aea-3d68-462f-91a7-38edbbe4ab6f",
            "--client-secret-stdin",
            stdin="x\n",
            monkeypatch=monkeypatch,
        )
    assert not DynamicsCrmSetting.objects.exists()


def configure(organization_uri: str, setting, monkeypatch):
    return run(
        "dynamics",
        "configure",
        "acme",
        "--organization-uri",
        organization_uri,
        "--tenant-id",
        setting.tenant_id,
        "--client-id",
        setting.client_id,
        monkeypatch=monkeypatch,
    )


@pytest.mark.django_db
def test_configuring_another_organization_forgets_the_delta_link(setting, monkeypatch):
    setting.delta_link = f"{setting.organization_uri}/api/data/v9.2/systemusers?$deltatoken=1"
    setting.delta_fingerprint = "abc"
    setting.save()

    # The same organization again (written another way): the next sync continues.
    configure(setting.organization_uri + "/", setting, monkeypatch)
    setting.refresh_from_db()
    assert setting.delta_link and setting.delta_fingerprint == "abc"

    # Another one: its delta link can't be followed there, so the next sync reads everything.
    configure("https://contoso.crm.dynamics.com", setting, monkeypatch)
    setting.refresh_from_db()
    assert setting.organization_uri == "https://contoso.crm.dynamics.com"
    assert setting.delta_link == "" and setting.delta_fingerprint == ""
    assert setting.needs_full_sync() == "No earlier sync to continue from."


@pytest.mark.django_db
@pytest.mark.parametrize(
    "arguments, message",
    [
        (["x" * 100_000, "--name", "X"], "slug: Ensure this value has at most 64 characters"),
        (["acme", "--name", "x" * 100_000], "name: Ensure this value has at most 200 characters"),
        (["acme", "--name", ""], "name: This field cannot be blank."),
        (["Acme Inc", "--name", "Acme"], "slug: Enter a valid “slug”"),
        (["Acme", "--name", "Acme"], "'Acme' isn't a valid slug"),
        (["acme", "--name", "Acme", "--time-zone", "Mars/Olympus"], "isn't a time zone"),
        (["acme", "--name", "Acme", "--time-zone", "../../etc/passwd"], "isn't a time zone"),
        (["acme", "--name", "Acme", "--time-zone", "x" * 100_000], "time zone: Ensure"),
    ],
)
def test_company_add_refuses_bad_input_in_one_line_and_creates_nothing(arguments, message):
    with pytest.raises(CommandError, match=message) as caught:
        run("company", "add", *arguments)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300
    assert not Company.objects.exists()


@pytest.mark.django_db
def test_company_add_takes_an_iana_time_zone():
    run("company", "add", "globex", "--name", "Globex", "--time-zone", "Europe/Paris")
    assert Company.objects.get(slug="globex").time_zone == "Europe/Paris"


@pytest.mark.django_db
def test_company_list_shows_each_company_with_its_users():
    acme = Company.objects.create(slug="acme", name="Acme Corp", time_zone="Europe/Paris")
    Company.objects.create(slug="globex", name="Globex")
    User.objects.create(company=acme, email="a@acme.test", first_name="A")
    User.objects.create(company=acme, email="b@acme.test", is_active=False)

    listed = json.loads(run("company", "list", "--json"))
    assert [
        (c["slug"], c["name"], c["time_zone"], c["users"], c["active_users"]) for c in listed
    ] == [
        ("acme", "Acme Corp", "Europe/Paris", 2, 1),
        ("globex", "Globex", "UTC", 0, 0),
    ]
    text = run("company", "list")
    assert "acme\tAcme Corp\tEurope/Paris\t1 active of 2 users" in text


@pytest.mark.django_db
def test_company_list_without_companies_says_how_to_add_one():
    assert json.loads(run("company", "list", "--json")) == []
    assert "learnexa company add SLUG --name NAME" in run("company", "list")


@pytest.mark.django_db
def test_with_json_a_failure_is_one_json_object_on_stdout(setting):
    for args in (("users", "list", "nope", "--json"), ("dynamics", "sync", "nope", "--json")):
        out = io.StringIO()
        with pytest.raises(CommandError, match="No company with the slug 'nope'"):
            call_command(*args, stdout=out, stderr=io.StringIO())
        assert "No company with the slug 'nope'" in json.loads(out.getvalue())["error"]

    setting.set_client_secret("wrong")
    setting.save()
    out = io.StringIO()
    with pytest.raises(CommandError, match="client secret is wrong"):
        call_command("dynamics", "sync", "acme", "--json", stdout=out, stderr=io.StringIO())
    summary = json.loads(out.getvalue())
    assert summary["status"] == "failed" and "client secret is wrong" in summary["error"]


@pytest.mark.django_db
def test_a_sync_of_the_stopped_demo_says_so_at_once_and_records_nothing(setting, settings):
    settings.LEARNEXA_DEMO_SIMULATOR_STOPPED = setting.organization_uri.rstrip("/")
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"Can't reach https://.*: is the demo running\?"):
        call_command("dynamics", "sync", "acme", "--json", stdout=out, stderr=io.StringIO())
    assert "is the demo running?" in json.loads(out.getvalue())["error"]
    assert not setting.runs.exists()


@pytest.mark.django_db
def test_a_failed_sync_exits_non_zero_with_a_one_line_reason(setting):
    setting.set_client_secret("wrong")
    setting.save()
    with pytest.raises(CommandError, match="client secret is wrong") as caught:
        run("dynamics", "sync", "acme")
    assert "\n" not in str(caught.value)


@pytest.mark.django_db
def test_the_scheduler_queues_due_companies_once(setting, django_capture_on_commit_callbacks):
    from django.utils import timezone

    from learnexa.dynamics_crm.models import SyncRun

    DynamicsCrmSetting.objects.filter(pk=setting.pk).update(next_sync_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        run("scheduler")
        run("scheduler")
    assert SyncRun.objects.filter(company=setting.company, trigger="schedule").count() == 1
    setting.refresh_from_db()
    assert setting.next_sync_at > timezone.now()


@pytest.mark.django_db
def test_on_a_terminal_a_sync_shows_its_progress_on_stderr_keeping_stdout_json(
    setting, monkeypatch, capsys
):
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    # The words are learnexa.dynamics_crm.progress's; the command shows them on one line.
    monkeypatch.setattr(
        "learnexa.dynamics_crm.management.commands.dynamics.describe",
        lambda run: {"percent": 42.0, "text": f"{run.records} records so far"},
    )
    out = io.StringIO()
    call_command("dynamics", "sync", "acme", "--json", stdout=out)
    summary = json.loads(out.getvalue())
    assert summary["status"] == "succeeded"
    progress = capsys.readouterr().err
    assert f"\r42 % · {summary['records']} records so far" in progress
