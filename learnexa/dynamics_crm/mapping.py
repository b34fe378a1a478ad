"""A Dataverse systemuser record → the platform's user fields. It knows records and fields,
not HTTP and not the database.
"""

from __future__ import annotations

import unicodedata
import uuid
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator

# accessmode values of accounts that aren't people who could take a course.
NON_HUMAN_ACCESS_MODES = {
    3: "a support user",
    4: "a non-interactive user",
    5: "a delegated admin",
}

# The columns the sync reads (the $select); the rest of a record is never fetched.
SYSTEMUSER_COLUMNS = [
    "systemuserid",
    "internalemailaddress",
    "firstname",
    "lastname",
    "jobtitle",
    "title",
    "address1_telephone1",
    "mobilephone",
    "address1_city",
    "address1_country",
    "employeeid",
    "isdisabled",
    "accessmode",
    "applicationid",
    "azureactivedirectoryobjectid",
]

# user field → (Dynamics columns, first non-empty wins; the user field's maximum length)
FIELD_MAP: dict[str, tuple[tuple[str, ...], int]] = {
    "first_name": (("firstname",), 256),
    "last_name": (("lastname",), 256),
    "job_title": (("jobtitle", "title"), 128),
    "phone": (("address1_telephone1", "mobilephone"), 64),
    "city": (("address1_city",), 128),
    "country": (("address1_country",), 128),
    "employee_id": (("employeeid",), 100),
}
SYNCED_FIELDS = ("email", *FIELD_MAP)

_email_validator = EmailValidator()


@dataclass
class MappedRecord:
    """What a record says the user should look like, or why it is left alone."""

    systemuser_id: uuid.UUID | None
    email: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    entra_object_id: uuid.UUID | None = None
    is_enabled: bool = True
    skip_reason: str = ""

    @property
    def email_key(self) -> str:
        return self.email.lower()


def clean_text(value, max_length: int) -> str:
    """A single line of printable text, at most `max_length` characters."""
    if value is None:
        return ""
    text = unicodedata.normalize("NFC", str(value))
    # Control and format characters (including bidirectional overrides) have no place in a
    # name or a title and can disguise one; whitespace of any kind becomes a space.
    text = "".join(
        " " if ch.isspace() else ch
        for ch in text
        if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co")
    )
    return " ".join(text.split())[:max_length]


def parse_guid(value) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def map_systemuser(record: dict) -> MappedRecord:
    systemuser_id = parse_guid(record.get("systemuserid"))
    mapped = MappedRecord(systemuser_id=systemuser_id)
    email = clean_text(record.get("internalemailaddress"), 1000)
    mapped.email = email

    if systemuser_id is None:
        mapped.skip_reason = "The record has no valid systemuserid."
        return mapped
    if record.get("applicationid"):
        mapped.skip_reason = "An application user, not a person."
        return mapped
    access_mode = record.get("accessmode")
    if access_mode in NON_HUMAN_ACCESS_MODES:
        mapped.skip_reason = f"Not a person: {NON_HUMAN_ACCESS_MODES[access_mode]}."
        return mapped
    if not email:
        mapped.skip_reason = "No primary email (internalemailaddress) in Dynamics."
        return mapped
    try:
        if len(email) > 254:
            raise ValidationError("too long")
        _email_validator(email)
    except ValidationError:
        mapped.skip_reason = f"The primary email isn't a valid address: {email[:100]!r}."
        return mapped

    mapped.fields = {
        name: next((clean_text(record.get(c), limit) for c in columns if record.get(c)), "")
        for name, (columns, limit) in FIELD_MAP.items()
    }
    mapped.entra_object_id = parse_guid(record.get("azureactivedirectoryobjectid"))
    mapped.is_enabled = record.get("isdisabled") is not True
    return mapped
