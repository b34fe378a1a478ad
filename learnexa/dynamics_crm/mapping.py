"""A Dataverse systemuser record → the platform's user fields. It knows records and fields,
not HTTP and not the database.

Which column feeds which field, and when, is the company's choice (`field_mapping` on its
settings), over the defaults below. Email is not in the mapping: it is the person's
identity, always read from the primary email.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
import uuid
from dataclasses import asdict, dataclass, field

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator

FORMATTED = "@OData.Community.Display.V1.FormattedValue"

# accessmode values of accounts that aren't people who could take a course.
NON_HUMAN_ACCESS_MODES = {
    3: "a support user",
    4: "a non-interactive user",
    5: "a delegated admin",
}

# Always read: the record's identity and what decides whether it is a person in scope.
IDENTITY_COLUMNS = [
    "systemuserid",
    "internalemailaddress",
    "isdisabled",
    "accessmode",
    "applicationid",
    "azureactivedirectoryobjectid",
]


class Policy:
    ALWAYS = "always"  # on create and on every sync
    ON_CREATE = "on_create"  # only when the sync creates the user
    IF_EMPTY = "if_empty"  # only while the platform's value is empty
    CHOICES = [
        (ALWAYS, "Always"),
        (ON_CREATE, "Only when creating the user"),
        (IF_EMPTY, "Only while empty here"),
    ]


@dataclass(frozen=True)
class FieldRule:
    field: str
    column: str
    fallback: str = ""
    policy: str = Policy.ALWAYS
    # An empty value in Dynamics never wipes the platform's, unless the admin chose so.
    clear: bool = False


# user field → its maximum length; the mappable fields.
FIELD_LENGTHS = {
    "first_name": 256,
    "last_name": 256,
    "job_title": 128,
    "phone": 64,
    "city": 128,
    "country": 128,
    "employee_id": 100,
    "department": 160,
}

DEFAULT_RULES = (
    FieldRule("first_name", "firstname"),
    FieldRule("last_name", "lastname"),
    FieldRule("job_title", "jobtitle", fallback="title"),
    FieldRule("phone", "address1_telephone1", fallback="mobilephone"),
    FieldRule("city", "address1_city"),
    FieldRule("country", "address1_country"),
    FieldRule("employee_id", "employeeid"),
    # A lookup: the business unit's name, from the formatted value Dataverse annotates.
    FieldRule("department", "_businessunitid_value"),
)

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


class Mapping:
    def __init__(self, rules: tuple[FieldRule, ...] = DEFAULT_RULES):
        self.rules = rules

    @classmethod
    def for_setting(cls, setting) -> Mapping:
        return cls.from_config(setting.field_mapping or {})

    @classmethod
    def from_config(cls, config: dict) -> Mapping:
        """The defaults, with the company's choices over them; unknown fields are refused."""
        rules = {rule.field: rule for rule in DEFAULT_RULES}
        for name, options in config.items():
            if name not in FIELD_LENGTHS:
                raise ValueError(f"'{name}' is not a user field that can be mapped.")
            if options is None:  # switched off
                rules.pop(name, None)
                continue
            base = asdict(rules.get(name, FieldRule(name, "")))
            base.update({k: v for k, v in options.items() if k in base and k != "field"})
            rule = FieldRule(**base)
            if not rule.column:
                raise ValueError(f"Choose the Dynamics column that feeds '{name}'.")
            if rule.policy not in dict(Policy.CHOICES):
                raise ValueError(f"'{rule.policy}' is not a policy for '{name}'.")
            rules[name] = rule
        return cls(tuple(rules.values()))

    @property
    def columns(self) -> list[str]:
        """The $select: identity columns and the mapped ones, nothing else."""
        columns = list(IDENTITY_COLUMNS)
        for rule in self.rules:
            for column in (rule.column, rule.fallback):
                if column and column not in columns:
                    columns.append(column)
        return columns

    @property
    def fingerprint(self) -> str:
        """Changes whenever what is read or how it is applied changes."""
        payload = json.dumps([asdict(rule) for rule in self.rules], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def rule(self, name: str) -> FieldRule | None:
        return next((r for r in self.rules if r.field == name), None)

    def map(self, record: dict) -> MappedRecord:
        mapped = map_identity(record)
        if mapped.skip_reason:
            return mapped
        mapped.fields = {
            rule.field: next(
                (
                    v
                    for c in (rule.column, rule.fallback)
                    if c and (v := column_text(record, c, FIELD_LENGTHS[rule.field]))
                ),
                "",
            )
            for rule in self.rules
        }
        return mapped


def column_text(record: dict, column: str, max_length: int) -> str:
    if column.startswith("_") and column.endswith("_value"):
        # A lookup's value is the related row's id; its name is in the formatted value.
        return clean_text(record.get(column + FORMATTED), max_length)
    return clean_text(record.get(column), max_length)


def clean_text(value, max_length: int) -> str:
    """A single line of printable text, at most `max_length` characters."""
    if value is None or isinstance(value, (dict, list)):
        return ""
    if isinstance(value, bool):
        value = "Yes" if value else "No"
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
    if not value or not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def map_identity(record: dict) -> MappedRecord:
    """Who the record is, and whether it is a person the sync should look at."""
    systemuser_id = parse_guid(record.get("systemuserid"))
    mapped = MappedRecord(systemuser_id=systemuser_id)
    raw_email = record.get("internalemailaddress")
    email = clean_text(raw_email, 1000) if isinstance(raw_email, str) else ""
    mapped.email = email

    if systemuser_id is None:
        mapped.skip_reason = "The record has no valid systemuserid."
    elif record.get("applicationid"):
        mapped.skip_reason = "An application user, not a person."
    elif record.get("accessmode") in NON_HUMAN_ACCESS_MODES:
        mapped.skip_reason = f"Not a person: {NON_HUMAN_ACCESS_MODES[record['accessmode']]}."
    elif not email:
        mapped.skip_reason = "No primary email (internalemailaddress) in Dynamics."
    elif not valid_email(email):
        mapped.skip_reason = f"The primary email isn't a valid address: {email[:100]!r}."
    else:
        mapped.entra_object_id = parse_guid(record.get("azureactivedirectoryobjectid"))
        mapped.is_enabled = record.get("isdisabled") is not True
    return mapped


def valid_email(email: str) -> bool:
    try:
        if len(email) > 254:
            raise ValidationError("too long")
        _email_validator(email)
    except ValidationError:
        return False
    return True


DEFAULT_MAPPING = Mapping()
SYSTEMUSER_COLUMNS = DEFAULT_MAPPING.columns


def map_systemuser(record: dict) -> MappedRecord:
    """Map with the default rules (tests and tools; the sync uses the company's mapping)."""
    return DEFAULT_MAPPING.map(record)
