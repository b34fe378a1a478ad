"""Bad data from Dynamics: every record is either stored cleaned or skipped with its reason,
and the run goes on and succeeds."""

from __future__ import annotations

import unicodedata
import uuid

import pytest

from learnexa.accounts.models import Company, User
from learnexa.dynamics_crm.dataverse import DataverseClient
from learnexa.dynamics_crm.mapping import FIELD_LENGTHS, FORMATTED, Mapping
from learnexa.dynamics_crm.models import SyncChange, SyncRun
from learnexa.dynamics_crm.sync import execute_run, open_client

PAGE = 25
TEXT_FIELDS = list(FIELD_LENGTHS)
# Ids whose order puts them first and last in Dynamics' paging (SQL Server sorts a GUID by
# its last six bytes first), so that the two halves of a pair land on different pages.
FIRST = "00000000-0000-0000-0000-{:012x}"
LAST = "ffffffff-ffff-ffff-ffff-{:012x}"


@pytest.fixture(autouse=True)
def _small_pages(settings):
    settings.LEARNEXA_DYNAMICS_PAGE_SIZE = PAGE


def sync(setting, **kwargs) -> SyncRun:
    run = SyncRun.objects.create(
        setting=setting, company=setting.company, trigger=SyncRun.Trigger.COMMAND_LINE
    )
    run = execute_run(run, **kwargs)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    return run


def user_of(setting, systemuser_id) -> User | None:
    return User.objects.filter(
        company=setting.company, dynamics_systemuser_id=systemuser_id
    ).first()


def skip_reason(run, systemuser_id) -> str:
    change = run.changes.get(systemuser_id=systemuser_id)
    assert change.action == SyncChange.Action.SKIPPED, (change.action, change.reason)
    assert change.reason
    return change.reason


def is_clean(text: str, limit: int) -> bool:
    return len(text) <= limit and not any(
        unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co") for c in text
    )


def assert_stored_clean(user: User) -> None:
    for name, limit in FIELD_LENGTHS.items():
        assert is_clean(getattr(user, name), limit), (name, getattr(user, name)[:80])
    assert is_clean(user.email, 254)


def assert_accounted_for(setting, run, ids) -> None:
    """Each record is a clean user, or skipped with its reason; the others are unharmed."""
    for sid in ids:
        user = user_of(setting, sid)
        if user is not None:
            assert_stored_clean(user)
        else:
            skip_reason(run, sid)
    assert run.created + run.skipped + run.unchanged + run.updated == run.records
    assert run.failed == 0


@pytest.mark.django_db
def test_invalid_oversized_and_duplicate_emails(setting, simulator):
    create = simulator.store.create_user
    invalid = create(firstname="No", lastname="At", internalemailaddress="not-an-email")
    spaced = create(internalemailaddress="john smith@contoso.com")
    oversized = create(internalemailaddress="a" * 250 + "@contoso.com")
    emoji = create(internalemailaddress="🎓grad@contoso.com")
    first = create(
        systemuserid=FIRST.format(1), firstname="First", internalemailaddress="dup@contoso.com"
    )
    second = create(
        systemuserid=LAST.format(1), firstname="Second", internalemailaddress="DUP@Contoso.COM"
    )
    # The same address with a non-ASCII domain in other letter cases, on other pages.
    idn_first = create(systemuserid=FIRST.format(2), internalemailaddress="anna@BÜCHER.example")
    idn_second = create(systemuserid=LAST.format(2), internalemailaddress="anna@bücher.example")

    run = sync(setting)

    assert "isn't a valid address" in skip_reason(run, invalid)
    assert "isn't a valid address" in skip_reason(run, spaced)
    assert "isn't a valid address" in skip_reason(run, oversized)
    assert len(run.changes.get(systemuser_id=oversized).email) <= 254
    assert "isn't a valid address" in skip_reason(run, emoji)
    assert user_of(setting, first).first_name == "First"
    assert "same email" in skip_reason(run, second) or "another Dynamics user" in skip_reason(
        run, second
    )
    assert user_of(setting, second) is None
    users = User.objects.filter(company=setting.company)
    assert users.filter(email__iexact="dup@contoso.com").count() == 1
    idn = [u for u in users if u.email.lower() == "anna@bücher.example"]
    assert len(idn) == 1, [u.email for u in idn]
    assert (user_of(setting, idn_first) is None) != (user_of(setting, idn_second) is None)
    emails = [u.email.lower() for u in users]
    assert len(emails) == len(set(emails))
    assert_accounted_for(setting, run, [invalid, spaced, oversized, emoji, first, second])

    # And again: nothing changes, nothing is duplicated.
    again = sync(setting)
    assert (again.created, again.updated, again.deactivated) == (0, 0, 0)
    assert User.objects.filter(company=setting.company).count() == len(emails)


@pytest.mark.django_db
def test_huge_names_control_characters_direction_overrides_and_emoji(setting, simulator):
    create = simulator.store.create_user
    huge = create(
        firstname="A" * 10_000,
        lastname="B" * 10_000,
        jobtitle="C" * 10_000,
        address1_city="D" * 10_000,
        employeeid="9" * 10_000,
        internalemailaddress="huge@contoso.com",
    )
    tricky = create(
        firstname="Eve\u202e\x00\x07lyn 🎓",
        lastname="O'Brien\u200f\t\nSmith\u2066",
        jobtitle="Head of 🚀 Growth\r\n\x1b[31m",
        address1_telephone1="+1\u00a0555\u200b0100",
        address1_city="Zürich\ufeff",
        internalemailaddress="tricky@contoso.com",
    )
    hidden = create(firstname="Hidden", internalemailaddress="\u202emallory@contoso.com\u200b")

    run = sync(setting)

    user = user_of(setting, huge)
    assert (user.first_name, user.last_name) == ("A" * 256, "B" * 256)
    assert user.job_title == "C" * 128 and user.city == "D" * 128
    assert user.employee_id == "9" * 100
    user = user_of(setting, tricky)
    assert user.first_name == "Evelyn 🎓"
    assert user.last_name == "O'Brien Smith"
    assert user.job_title == "Head of 🚀 Growth [31m"
    assert user.phone == "+1 5550100"
    assert user.city == "Zürich"
    assert user_of(setting, hidden).email == "mallory@contoso.com"
    change = run.changes.get(systemuser_id=tricky)
    assert change.fields["first_name"] == [None, "Evelyn 🎓"]
    assert_accounted_for(setting, run, [huge, tricky, hidden])


@pytest.mark.django_db
def test_nulls_in_every_column(setting, simulator):
    store = simulator.store
    columns = [
        c
        for c in store.systemusers.types
        if c not in ("systemuserid", "versionnumber", "ownerid", "address1_composite")
    ]
    all_null = store.create_user(**dict.fromkeys(columns))
    only_email = store.create_user(
        **{**dict.fromkeys(columns), "internalemailaddress": "only.email@contoso.com"}
    )

    run = sync(setting)

    assert "No primary email" in skip_reason(run, all_null)
    user = user_of(setting, only_email)
    assert user is not None and user.is_active
    assert all(getattr(user, name) == "" for name in TEXT_FIELDS)
    assert_accounted_for(setting, run, [all_null, only_email])


@pytest.mark.django_db
def test_values_of_unexpected_types(setting, simulator):
    create = simulator.store.create_user
    numbers = create(
        firstname=12345,
        lastname=["Not", "a", "string"],
        jobtitle={"nested": "object"},
        address1_city=True,
        employeeid=4.5,
        internalemailaddress="numbers@contoso.com",
        fullname="Numbers",  # the simulator composes it from strings only
    )
    # The simulator derives columns from a string email on create; set odd ones afterwards.
    email_number = create(firstname="Numeric", internalemailaddress="numeric@contoso.com")
    simulator.store.update_user(email_number, internalemailaddress=12345)
    email_list = create(firstname="Listed", internalemailaddress="listed@contoso.com")
    simulator.store.update_user(email_list, internalemailaddress=["a@contoso.com"])
    disabled_text = create(internalemailaddress="disabled.text@contoso.com", isdisabled="true")
    enabled_text = create(internalemailaddress="enabled.text@contoso.com", isdisabled="false")
    access_text = create(internalemailaddress="service@contoso.com", accessmode="4")
    odd_ids = create(
        internalemailaddress="odd.ids@contoso.com",
        azureactivedirectoryobjectid=42,
        applicationid=None,
    )

    run = sync(setting)

    user = user_of(setting, numbers)
    assert user.first_name == "12345" and user.employee_id == "4.5"
    assert user.last_name == "" and user.job_title == ""
    assert "No primary email" in skip_reason(run, email_number)
    assert "No primary email" in skip_reason(run, email_list)
    # A disabled person written as text is still disabled: never created active.
    disabled = user_of(setting, disabled_text)
    assert disabled is None or not disabled.is_active
    assert user_of(setting, enabled_text).is_active
    # A non-interactive account written as text is still not a person.
    assert user_of(setting, access_text) is None
    assert "Not a person" in skip_reason(run, access_text)
    odd = user_of(setting, odd_ids)
    assert odd is not None and odd.entra_object_id is None
    assert_accounted_for(
        setting,
        run,
        [numbers, email_number, email_list, disabled_text, enabled_text, access_text, odd_ids],
    )


class MissingColumns(DataverseClient):
    """Dynamics answering without some of the selected columns on some rows."""

    def __init__(self, *args, drop: dict[str, tuple[str, ...]], **kwargs):
        super().__init__(*args, **kwargs)
        self.drop = drop

    def pages(self, url, **kwargs):
        for page in super().pages(url, **kwargs):
            for row in page.records:
                for column in self.drop.get(str(row.get("systemuserid")), ()):
                    row.pop(column, None)
            yield page


@pytest.mark.django_db
def test_missing_columns(setting, simulator, monkeypatch):
    create = simulator.store.create_user
    no_names = create(firstname="Gone", lastname="Too", internalemailaddress="nn@contoso.com")
    no_email = create(firstname="NoMail", internalemailaddress="nomail@contoso.com")
    no_flags = create(internalemailaddress="noflags@contoso.com", isdisabled=False)
    bare = create(internalemailaddress="bare@contoso.com")
    no_id = create(internalemailaddress="noid@contoso.com")
    names = ("firstname", "lastname", "jobtitle", "title", "address1_city", "employeeid")
    kept = ("systemuserid", "internalemailaddress")
    drop = {
        no_names: names,
        no_email: ("internalemailaddress",),
        no_flags: ("isdisabled", "accessmode", "applicationid", "azureactivedirectoryobjectid"),
        bare: (
            *(c for c in Mapping.for_setting(setting).columns if c not in kept),
            "_businessunitid_value" + FORMATTED,
        ),
        no_id: ("systemuserid",),
    }
    base = open_client(setting)
    client = MissingColumns(
        base.origin, base.tokens, page_size=PAGE, backoff_seconds=0.01, drop=drop
    )

    run = sync(setting, client=client)

    user = user_of(setting, no_names)
    assert user is not None and user.first_name == "" and user.last_name == ""
    assert "No primary email" in skip_reason(run, no_email)
    assert user_of(setting, no_flags).is_active
    assert user_of(setting, bare).email == "bare@contoso.com"
    assert user_of(setting, no_id) is None
    assert run.changes.filter(
        systemuser_id=None, email="noid@contoso.com", reason__contains="no valid systemuserid"
    ).exists()
    assert_accounted_for(setting, run, [no_names, no_email, no_flags, bare])


@pytest.mark.django_db
def test_bad_data_spoils_nothing_for_everyone_else(setting, simulator, connect):
    """The people around the bad records come out exactly as a clean sync makes them."""
    clean = Company.objects.create(slug="clean", name="Clean")
    sync(connect(clean))
    create = simulator.store.create_user
    bad = [
        create(
            firstname="\x00" * n + "Z" * 5000,
            lastname=[n],
            fullname="Bad",  # the simulator composes it from strings only
            internalemailaddress=("bad" * n) + "@" if n % 2 else f"bad{n}@contoso.com\u202e",
            isdisabled="maybe" if n % 3 else None,
            accessmode="x" if n % 5 else None,
        )
        for n in range(30)
    ]

    run = sync(setting)

    bad_ids = {uuid.UUID(i) for i in bad}
    assert [row for row in table(setting.company) if row[-1] not in bad_ids] == table(clean)
    assert_accounted_for(setting, run, bad)
    assert run.pages == -(-run.records // PAGE)


def table(company) -> list[tuple]:
    return sorted(
        User.objects.filter(company=company).values_list(
            "email", *TEXT_FIELDS, "is_active", "created_source", "dynamics_systemuser_id"
        )
    )
