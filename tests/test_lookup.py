"""One person, looked up by email: exactly that person, whatever the quotes and wildcards."""

import pytest
from django.core.management import call_command

from learnexa.accounts.models import User
from learnexa.dynamics_crm.lookup import email_filter, lookup_person


def test_the_filter_is_an_exact_match_with_quotes_doubled():
    assert email_filter("o'brien@example.com") == "internalemailaddress eq 'o''brien@example.com'"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "email, decoys",
    [
        ("o'brien@example.com", ["obrien@example.com", "o''brien@example.com"]),
        ("a_b@example.com", ["axb@example.com", "a%b@example.com", "ab@example.com"]),
    ],
)
def test_a_lookup_returns_exactly_that_person(setting, simulator, email, decoys):
    target = simulator.store.create_user(
        firstname="Target", lastname="Person", internalemailaddress=email
    )
    for decoy in decoys:
        simulator.store.create_user(
            firstname="Decoy", lastname="Person", internalemailaddress=decoy
        )

    result = lookup_person(setting, email)

    assert [r["systemuserid"] for r in result.records] == [target]
    assert result.error == ""
    assert any("Created" in step for step in result.steps)
    assert not User.objects.filter(company=setting.company).exists()  # looking writes nothing


@pytest.mark.django_db
def test_a_lookup_with_apply_syncs_only_that_person(setting, simulator, capsys):
    simulator.store.create_user(
        firstname="Siobhán", lastname="O'Brien", internalemailaddress="o'brien@example.com"
    )

    call_command("dynamics", "lookup", "acme", "O'Brien@Example.com", "--apply")

    users = User.objects.filter(company=setting.company)
    assert [u.email for u in users] == ["o'brien@example.com"]
    assert users.get().first_name == "Siobhán"
    out = capsys.readouterr().out
    assert "1. Asked Entra ID" in out and "Applied as sync" in out


HUGE_EMAIL = "a" * 100_000 + "@example.com"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "email, message",
    [
        (HUGE_EMAIL, "That email is 100,012 characters long; an email has at most 254."),
        ("not an email", "“not an email” is not a valid email address."),
        ("a" * 250 + "@b.co", "an email has at most 254"),
    ],
)
def test_a_huge_or_malformed_email_is_refused_before_anything_is_sent(
    setting, simulator, email, message
):
    simulator.clear_request_log()
    result = lookup_person(setting, email)
    assert message in result.error and result.records == []
    assert simulator.request_log() == []


@pytest.mark.django_db
def test_the_command_line_refuses_a_huge_email_in_one_line(setting, simulator):
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="an email has at most 254") as caught:
        call_command("dynamics", "lookup", "acme", HUGE_EMAIL)
    assert "\n" not in str(caught.value)


def test_the_command_line_exits_non_zero_without_a_traceback(tmp_path):
    """As an operator runs it, in a database of its own: one line on stderr, a non-zero exit."""
    import os
    import subprocess
    import sys

    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEARNEXA_", "DJANGO_"))}
    env.pop("DATABASE_URL", None)
    env["LEARNEXA_DATA_DIR"] = str(tmp_path)
    env["LEARNEXA_ENCRYPTION_KEYS"] = Fernet.generate_key().decode()
    subprocess.run(
        [sys.executable, "-m", "learnexa.cli", "migrate", "-v", "0"], env=env, check=True
    )
    for command in (
        ["company", "add", "acme", "--name", "Acme"],
        [
            "dynamics",
            "configure",
            "acme",
            "--organization-uri",
            "https://contoso.crm.dynamics.com",
            "--tenant-id",
            "contoso.onmicrosoft.com",
            "--client-id",
            "d0835aea-3d68-462f-91a7-38edbbe4ab6f",
            "--client-secret-stdin",
        ],
    ):
        subprocess.run(
            [sys.executable, "-m", "learnexa.cli", *command],
            env=env,
            input="a-secret\n",
            text=True,
            check=True,
            capture_output=True,
        )
    result = subprocess.run(
        [sys.executable, "-m", "learnexa.cli", "dynamics", "lookup", "acme", HUGE_EMAIL],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "an email has at most 254" in result.stderr
