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
