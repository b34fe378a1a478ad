"""A Dataverse systemuser record → the platform's user fields. It knows records and fields,
not HTTP and not the database; cleaning.py makes each value safe.

Which column feeds which field, and when, is the company's choice (`field_mapping` on its
settings), over the defaults below. Email is not in the mapping: it is the person's
identity, always read from the primary email.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from .cleaning import as_flag, as_number, clean_column, clean_text, parse_guid, valid_email

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

CONTACT_RULES = (
    FieldRule("first_name", "firstname"),
    FieldRule("last_name", "lastname"),
    FieldRule("job_title", "jobtitle"),
    FieldRule("phone", "telephone1", fallback="mobilephone"),
    FieldRule("city", "address1_city"),
    FieldRule("country", "address1_country"),
    FieldRule("employee_id", "employeeid"),
    FieldRule("department", "department"),
)


@dataclass(frozen=True)
class Source:
    """A Dataverse table people are synced from, and how to read who a record is."""

    key: str  # the entity set
    logical_name: str
    label: str
    id_column: str
    email_column: str
    # The users field that links a user to a record of this table.
    link_field: str
    identity_columns: tuple[str, ...]
    default_rules: tuple[FieldRule, ...]
    # The column a business-unit scope compares, or "" where the table has none.
    business_unit_column: str

    def identity(self, record: dict) -> MappedRecord:
        """Who the record is, and whether it is a person the sync should look at."""
        mapped = MappedRecord(record_id=parse_guid(record.get(self.id_column)))
        raw_email = record.get(self.email_column)
        mapped.email = email = clean_text(raw_email, 1000) if isinstance(raw_email, str) else ""
        mapped.email_key = email.lower()
        if mapped.record_id is None:
            mapped.skip_reason = f"The record has no valid {self.id_column}."
        elif reason := (self is SYSTEMUSERS and _not_a_person(record)):
            mapped.skip_reason = reason
        elif not email:
            mapped.skip_reason = f"No primary email ({self.email_column}) in Dynamics."
        elif not valid_email(email):
            mapped.skip_reason = f"The primary email isn't a valid address: {email[:100]!r}."
        elif self is SYSTEMUSERS:
            mapped.entra_object_id = parse_guid(record.get("azureactivedirectoryobjectid"))
            if as_flag(record.get("isdisabled")):
                mapped.is_enabled, mapped.disabled_reason = False, "Disabled in Dynamics."
        elif as_number(record.get("statecode")) == 1:
            mapped.is_enabled, mapped.disabled_reason = False, "Inactive in Dynamics."
        return mapped


@dataclass(slots=True)
class MappedRecord:
    """What a record says the user should look like, or why it is left alone."""

    # The Dynamics record's id, a systemuserid or a contactid, as parse_guid gives it.
    record_id: str | None
    email: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    entra_object_id: str | None = None
    is_enabled: bool = True
    # Why the person should not be active here: disabled in Dynamics, or out of scope.
    disabled_reason: str = ""
    skip_reason: str = ""
    # Out of the sync's scope (and not disabled): whether that deactivates is the admin's
    # choice, unlike being disabled in Dynamics.
    out_of_scope: bool = False
    # Fields whose value Dynamics has but the sync could not read (a lookup's name it
    # could not learn): left as they are here, never wiped.
    unknown: tuple[str, ...] = ()

    # The email as matched: ignoring case.
    email_key: str = ""


OPERATORS = {
    "eq": "is",
    "ne": "is not",
    "contains": "contains",
    "startswith": "starts with",
    "endswith": "ends with",
    "empty": "is empty",
    "not_empty": "is not empty",
}


@dataclass(frozen=True)
class Condition:
    """column operator value, compared as Dataverse compares strings: ignoring case."""

    column: str
    operator: str
    value: str = ""

    def __post_init__(self):
        if not self.column or not all(c.isalnum() or c == "_" for c in self.column):
            raise ValueError(f"'{self.column}' is not a Dynamics column name.")
        if self.operator not in OPERATORS:
            raise ValueError(
                f"'{self.operator}' is not an operator; use one of {', '.join(OPERATORS)}."
            )

    def matches(self, record: dict) -> bool:
        raw = record.get(self.column)
        text = (
            ""
            if raw is None
            else (str(raw).lower() if not isinstance(raw, bool) else str(raw).lower())
        )
        wanted = self.value.strip().lower()
        match self.operator:
            case "eq":
                return text == wanted
            case "ne":
                return text != wanted
            case "contains":
                return wanted in text
            case "startswith":
                return text.startswith(wanted)
            case "endswith":
                return text.endswith(wanted)
            case "empty":
                return text == ""
            case _:
                return text != ""

    def __str__(self) -> str:
        value = f" '{self.value}'" if self.operator not in ("empty", "not_empty") else ""
        return f"{self.column} {OPERATORS[self.operator]}{value}"


@dataclass(frozen=True)
class Scope:
    """Who the sync is for: people in these business units (any, if none chosen) who meet
    every condition. Evaluated here rather than as an OData $filter, because Dataverse
    refuses $filter on change-tracking reads; leaving the scope counts as being disabled."""

    business_units: tuple[str, ...] = ()
    conditions: tuple[Condition, ...] = ()
    unit_column: str = "_businessunitid_value"

    @classmethod
    def from_config(cls, business_units, conditions, unit_column="_businessunitid_value") -> Scope:
        units = tuple(str(u).lower() for u in business_units or () if parse_guid(str(u)))
        if units and not unit_column:
            raise ValueError("This table has no business unit to narrow the scope by.")
        return cls(units, tuple(Condition(**c) for c in conditions or ()), unit_column)

    @property
    def columns(self) -> list[str]:
        return ([self.unit_column] if self.business_units else []) + [
            c.column for c in self.conditions
        ]

    def excludes(self, record: dict, unit_names: dict[str, str] | None = None) -> str:
        """Why the record is out of the scope, or "". `unit_names`: business units' names
        by id, for a record without the formatted value."""
        column = self.unit_column
        if self.business_units and str(record.get(column) or "").lower() not in self.business_units:
            unit = (
                record.get(column + FORMATTED)
                or (unit_names or {}).get(parse_guid(record.get(column)))
                or record.get(column)
            )
            return f"Out of the sync's scope: business unit {unit or 'none'} is not one of those chosen."
        for condition in self.conditions:
            if not condition.matches(record):
                return f"Out of the sync's scope: {condition} is not true."
        return ""


class Mapping:
    def __init__(
        self,
        rules: tuple[FieldRule, ...] | None = None,
        scope: Scope = Scope(),
        source: Source | None = None,
    ):
        self.source = source or SYSTEMUSERS
        self.rules = self.source.default_rules if rules is None else rules
        self.scope = scope
        # Whether users deleted in Dynamics or out of scope are deactivated (the company's
        # switch), kept here so that every path that plans changes sees it.
        self.deactivate_missing = True
        # Where a run reads the names of lookups' related rows when pages lack them.
        self.names: LookupNames | None = None
        # Per rule, once: the field, the keys to read in order, and the maximum length.
        self._readers = [
            (
                rule.field,
                [value_key(c) for c in (rule.column, rule.fallback) if c],
                FIELD_LENGTHS[rule.field],
            )
            for rule in self.rules
        ]

    @classmethod
    def for_setting(cls, setting) -> Mapping:
        source = SOURCES.get(setting.source_table, SYSTEMUSERS)
        mapping = cls.from_config(setting.field_mapping or {}, source)
        mapping.scope = Scope.from_config(
            setting.scope_business_units, setting.scope_conditions, source.business_unit_column
        )
        mapping.deactivate_missing = setting.deactivate_missing
        return mapping

    @classmethod
    def from_config(cls, config: dict, source: Source | None = None) -> Mapping:
        """The defaults, with the company's choices over them; unknown fields are refused."""
        source = source or SYSTEMUSERS
        rules = {rule.field: rule for rule in source.default_rules}
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
        return cls(tuple(rules.values()), source=source)

    @property
    def columns(self) -> list[str]:
        """The $select: identity columns and the mapped ones, nothing else."""
        columns = list(self.source.identity_columns)
        wanted = [
            c for rule in self.rules for c in (rule.column, rule.fallback)
        ] + self.scope.columns
        for column in wanted:
            if column and column not in columns:
                columns.append(column)
        return columns

    @property
    def fingerprint(self) -> str:
        """Changes whenever what is read or how it is applied changes."""
        payload = json.dumps(
            {
                "source": self.source.key,
                "rules": [asdict(rule) for rule in self.rules],
                "scope": asdict(self.scope),
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def read_names_with(self, read: Callable[[str, list[str]], Iterable[dict]]) -> None:
        """Let map_page read lookups' names with `read` where pages lack them; kept for
        as long as this mapping, which is one run's."""
        self.names = LookupNames(read)

    def lookups(self) -> list[str]:
        """The lookup columns whose related rows' names the mapping reads: its fields', and
        the scope's business unit for the reason it gives."""
        columns = [
            key.removesuffix(FORMATTED)
            for _, keys, _ in self._readers
            for key in keys
            if key.endswith(FORMATTED)
        ]
        return columns + ([self.scope.unit_column] if self.scope.business_units else [])

    def wants_formatted_values(self) -> bool:
        """Whether pages should carry Dataverse's formatted values: only while a lookup the
        mapping reads has no names the run read itself. They make every page larger and
        slower to build and to read (benchmarks/README.md: a third of a full read's time)."""
        names = self.names
        return any(names is None or not names.complete(column) for column in self.lookups())

    def read_lookup_names(self) -> None:
        """Read the names of the lookups the mapping reads, where the sync can itself."""
        if self.names is not None:
            for column in self.lookups():
                if column in LOOKUP_TABLES:
                    self.names.names(column)

    def rule(self, name: str) -> FieldRule | None:
        return next((r for r in self.rules if r.field == name), None)

    def map(self, record: dict) -> MappedRecord:
        return self.map_page([record])[0]

    def map_page(self, records: list[dict]) -> list[MappedRecord]:
        """Map a page of records. Fields are read column by column, the page's values of a
        column at once: they are nearly always clean text already, which one check of the
        whole column confirms, where checking value by value costs a call each."""
        identity = self.source.identity
        page = [identity(record) for record in records]
        people = [(m, r) for m, r in zip(page, records, strict=True) if not m.skip_reason]
        if not people:
            return page
        mapped, records = zip(*people, strict=True)
        scope = self.scope
        if scope.business_units or scope.conditions:
            names = self.names
            unit_names = (
                names.names(scope.unit_column)
                if names is not None and names.complete(scope.unit_column)
                else None
            )
            for m, record in people:
                # Being disabled in Dynamics comes first: it deactivates whatever the
                # switch for leaving the scope says.
                if m.is_enabled and (reason := scope.excludes(record, unit_names)):
                    m.is_enabled, m.disabled_reason = False, reason
                    m.out_of_scope = True
        for name, keys, max_length in self._readers:
            values = clean_column([r.get(keys[0]) for r in records], max_length)
            unknown = self._lookup_names(keys[0], records, None, values, max_length)
            for fallback in keys[1:]:
                empty = [i for i, value in enumerate(values) if not value and i not in unknown]
                found = clean_column([records[i].get(fallback) for i in empty], max_length)
                for i, value in zip(empty, found, strict=True):
                    values[i] = value
                unknown |= self._lookup_names(fallback, records, empty, values, max_length)
            for m, value in zip(mapped, values, strict=True):
                m.fields[name] = value
            for i in unknown:
                mapped[i].unknown += (name,)
        return page

    def _lookup_names(self, key: str, records, indexes, values: list, max_length: int) -> set:
        """Fill in, at `indexes` (None: all), the names of a lookup's related rows that the
        records lack (delta pages may not carry formatted values) from `names`; returns the
        indexes whose name stays unknown. Costs nothing on pages that carry the names."""
        column = key.removesuffix(FORMATTED)
        if column == key or column not in LOOKUP_TABLES:
            return set()
        if indexes is None:
            if all(values):
                return set()
            indexes = range(len(values))
        missing = [i for i in indexes if not values[i] and records[i].get(column)]
        if not missing:
            return set()
        known = self.names.names(column) if self.names is not None else {}
        unknown = set()
        for i in missing:
            name = known.get(parse_guid(records[i].get(column)))
            if name:
                values[i] = clean_text(name, max_length)
            else:
                unknown.add(i)
        if unknown and self.names is not None:
            self.names.missed(column)
        return unknown


# The lookups whose related rows' names the sync can read itself: the entity set, its key
# and its name column.
LOOKUP_TABLES = {"_businessunitid_value": ("businessunits", "businessunitid", "name")}


class LookupNames:
    """The names of lookups' related rows (business units), read in one go and kept for the
    run: never a request per record. A full read has them read beside its first page, and
    asks for its later pages without formatted values (Mapping.wants_formatted_values);
    other reads ask for them only when a page lacks a name."""

    def __init__(self, read: Callable[[str, list[str]], Iterable[dict] | None]):
        # read(entity set, columns) → its rows, or None where the sync may not read it.
        self._read = read
        self._names: dict[str, dict[str, str]] = {}
        # The entity sets whose names were read, and named every record since.
        self._complete: set[str] = set()
        self._lock = threading.Lock()

    def names(self, column: str) -> dict[str, str]:
        """The related rows' names by their id, for a lookup column of LOOKUP_TABLES."""
        entity_set, key, name = LOOKUP_TABLES[column]
        with self._lock:
            if entity_set not in self._names:
                rows = self._read(entity_set, [key, name])
                self._names[entity_set] = {
                    guid: row[name]
                    for row in rows or ()
                    if (guid := parse_guid(row.get(key))) and isinstance(row.get(name), str)
                }
                if rows is not None:
                    self._complete.add(entity_set)
            return self._names[entity_set]

    def complete(self, column: str) -> bool:
        """Whether the names of `column`'s related rows are read and have named every record
        since, so that pages need not carry them. Never reads, never waits."""
        table = LOOKUP_TABLES.get(column)
        return table is not None and table[0] in self._complete

    def missed(self, column: str) -> None:
        """A record named a row the names lack (one added since they were read): pages carry
        the formatted values again for the rest of the run."""
        self._complete.discard(LOOKUP_TABLES[column][0])


def value_key(column: str) -> str:
    """Where a column's text is in a record."""
    if column.startswith("_") and column.endswith("_value"):
        # A lookup's value is the related row's id; its name is in the formatted value.
        return column + FORMATTED
    return column


def _not_a_person(record: dict) -> str:
    if record.get("applicationid"):
        return "An application user, not a person."
    mode = as_number(record.get("accessmode"))
    if isinstance(mode, int) and mode in NON_HUMAN_ACCESS_MODES:
        return f"Not a person: {NON_HUMAN_ACCESS_MODES[mode]}."
    return ""


SYSTEMUSERS = Source(
    key="systemusers",
    logical_name="systemuser",
    label="Users (the people who work in Dynamics)",
    id_column="systemuserid",
    email_column="internalemailaddress",
    link_field="dynamics_systemuser_id",
    identity_columns=tuple(IDENTITY_COLUMNS),
    default_rules=DEFAULT_RULES,
    business_unit_column="_businessunitid_value",
)
CONTACTS = Source(
    key="contacts",
    logical_name="contact",
    label="Contacts (customers and partners)",
    id_column="contactid",
    email_column="emailaddress1",
    link_field="dynamics_contact_id",
    identity_columns=("contactid", "emailaddress1", "statecode"),
    default_rules=CONTACT_RULES,
    business_unit_column="",
)
SOURCES = {source.key: source for source in (SYSTEMUSERS, CONTACTS)}

DEFAULT_MAPPING = Mapping()
SYSTEMUSER_COLUMNS = DEFAULT_MAPPING.columns


def map_systemuser(record: dict) -> MappedRecord:
    """Map with the default rules (tests and tools; the sync uses the company's mapping)."""
    return DEFAULT_MAPPING.map(record)
