import json
import uuid
from pathlib import Path

from learnexa.dynamics_crm.cleaning import clean_text
from learnexa.dynamics_crm.mapping import SYSTEMUSER_COLUMNS, map_systemuser

DESIGN_NOTE_RECORD = json.loads(
    (Path(__file__).parent / "fixtures" / "design_note_systemuser.json").read_text()
)


def test_the_design_notes_record_maps_to_a_disabled_person():
    mapped = map_systemuser(DESIGN_NOTE_RECORD)

    assert mapped.skip_reason == ""
    assert mapped.record_id == "9025bbf4-3430-4d0c-bfcf-16f0bf7fbc80"
    assert mapped.email == "davids@crmdemo.dynamics.com"
    assert mapped.fields == {
        "first_name": "David",
        "last_name": "So (Sample Data)",
        "job_title": "",
        "phone": "",
        "city": "",
        "country": "US",
        "employee_id": "",
        "department": "",  # the record came without annotations
    }
    assert mapped.entra_object_id is None
    assert mapped.is_enabled is False  # "isdisabled": true


def test_every_selected_column_exists_on_a_real_systemuser():
    assert set(SYSTEMUSER_COLUMNS) <= set(DESIGN_NOTE_RECORD)


def record(**fields):
    return {**DESIGN_NOTE_RECORD, "isdisabled": False, **fields}


def test_non_human_accounts_are_skipped_with_a_reason():
    assert "application user" in map_systemuser(record(applicationid=str(uuid.uuid4()))).skip_reason
    assert "support user" in map_systemuser(record(accessmode=3)).skip_reason
    assert "non-interactive" in map_systemuser(record(accessmode=4)).skip_reason
    assert "delegated admin" in map_systemuser(record(accessmode=5)).skip_reason
    assert map_systemuser(record(accessmode=1)).skip_reason == ""  # administrative: a person


def test_users_without_a_valid_email_are_skipped():
    assert "No primary email" in map_systemuser(record(internalemailaddress=None)).skip_reason
    assert "No primary email" in map_systemuser(record(internalemailaddress="  ")).skip_reason
    assert (
        "isn't a valid address"
        in map_systemuser(record(internalemailaddress="not-an-email")).skip_reason
    )
    long_email = "a" * 250 + "@example.com"
    assert (
        "isn't a valid address"
        in map_systemuser(record(internalemailaddress=long_email)).skip_reason
    )


def test_fallback_columns_fill_empty_fields():
    mapped = map_systemuser(
        record(jobtitle=None, title="Engineer", address1_telephone1=None, mobilephone="+1 555")
    )
    assert mapped.fields["job_title"] == "Engineer"
    assert mapped.fields["phone"] == "+1 555"


def test_text_is_cleaned_of_control_and_direction_characters_and_truncated():
    assert clean_text("Ann\x00a\u202e \t Lee\n", 100) == "Anna Lee"
    assert clean_text("Zoë 🎓", 100) == "Zoë 🎓"
    assert len(clean_text("x" * 10_000, 256)) == 256
    assert clean_text(None, 10) == ""
    assert clean_text(42, 10) == "42"


def test_a_lookup_maps_to_its_formatted_name_never_its_id():
    annotated = record(
        **{"_businessunitid_value@OData.Community.Display.V1.FormattedValue": "Sales"}
    )
    assert map_systemuser(annotated).fields["department"] == "Sales"


def test_the_quick_email_check_agrees_with_djangos_validator():
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    from learnexa.dynamics_crm.cleaning import _PLAIN_EMAIL, valid_email

    addresses = [
        "ann.lee@contoso.com",
        "a_b+tag@mail.example.co.uk",
        "O'Brien@contoso.com",
        "x@localhost",
        "ann..lee@contoso.com",
        ".ann@contoso.com",
        "ann@-contoso.com",
        "ann@contoso-.com",
        "ann@contoso",
        "ann@contoso.c",
        "ann@contoso.123",
        "ann@[10.0.0.1]",
        '"ann lee"@contoso.com',
        "zoë@contoso.com",
        "ann@xn--bcher-kva.example",
        "ann@bücher.example",
        "ann lee@contoso.com",
        "ann@contoso.com\n",
        "@contoso.com",
        "a" * 65 + "@" + "b" * 64 + ".com",
        "ann@" + "b" * 63 + ".com",
        "ann@" + "b" * 64 + ".com",
        "x" * 250 + "@a.com",
        "a!#$%&'*+/=?^_`{|}~-z@contoso.com",
        "ANN.LEE@CONTOSO.COM",
        "ann@contoso.com.",
        "ann@sub.-x.com",
        "ann.@contoso.com",
        "ann@contoso..com",
        "ann(x)@contoso.com",
    ]
    for address in addresses:
        try:
            validate_email(address)
            django_says = len(address) <= 254
        except ValidationError:
            django_says = False
        assert valid_email(address) == django_says, address
        if len(address) <= 254 and _PLAIN_EMAIL.fullmatch(address):
            assert django_says, f"the quick check accepts {address!r}, Django doesn't"


def test_guids_are_kept_as_canonical_text_whatever_their_spelling():
    from learnexa.dynamics_crm.cleaning import parse_guid

    canonical = "9025bbf4-3430-4d0c-bfcf-16f0bf7fbc80"
    for spelling in (canonical, canonical.upper(), f"{{{canonical}}}", canonical.replace("-", "")):
        assert parse_guid(spelling) == canonical
    for junk in ("", "9025bbf4", "not-a-guid", None, 42, canonical + "0"):
        assert parse_guid(junk) is None


def test_a_column_is_cleaned_exactly_as_its_values_one_by_one():
    from learnexa.dynamics_crm.cleaning import clean_column, clean_text

    tricky = [
        "Ann",
        "Ann  Lee",
        " Ann",
        "Ann ",
        "A|B",
        "A| B",
        "A |B",
        "Zoe\u0308",  # not NFC: an e and a combining diaeresis
        "Zoë",
        "Ann\u202eeeL",  # a bidirectional override
        "tab\there",
        "line\nbreak",
        "\u00a0nbsp\u00a0",
        "",
        None,
        True,
        42,
        {"a": 1},
        "x" * 300,
    ]
    clean = ["Ann", "Lee", "Müller", "", None, "y" * 300]
    for values in (tricky, clean, clean[:1], [], ["|"], [" ", " "], ["a", ""], ["", "b "]):
        for max_length in (5, 256):
            assert clean_column(list(values), max_length) == [
                clean_text(v, max_length) for v in values
            ], (values, max_length)
