"""The simulated organization's data: business units and system users.

Everything is generated deterministically from the seed (the same seed gives the same
users, ids, names and version numbers).  The store is thread-safe: every read or write
of the tables goes through ``store.lock``.
"""

from __future__ import annotations

import gc
import hashlib
import random
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from . import schema
from .tables import Row, Table, guid_sort_key

ORGANIZATION_ID = schema.DAVID_SO_RECORD["organizationid"]
ROOT_BUSINESS_UNIT_ID = schema.DAVID_SO_RECORD["_businessunitid_value"]
DAVID_SO_ID = schema.DAVID_SO_RECORD["systemuserid"]

# Generated rows' timestamps lie before this instant; changes made while the simulator
# runs use the simulator's clock (real time plus any advance).
DATASET_EPOCH = 1751241600  # 2025-06-30T00:00:00Z
FIRST_VERSION = 1_000_001


_DAYS: dict[int, str] = {}
_TIMES: list[str] = []
_DIGITS2 = tuple(f"{i:02d}" for i in range(100))
_DIGITS4 = tuple(f"{i:04d}" for i in range(10000))


def iso(ts: float) -> str:
    """UTC timestamp as Dataverse writes it: 2017-01-13T01:52:51Z (whole seconds)."""
    day, rest = divmod(int(ts), 86400)
    prefix = _DAYS.get(day)
    if prefix is None:
        prefix = _DAYS[day] = time.strftime("%Y-%m-%dT", time.gmtime(day * 86400))
    if not _TIMES:
        _TIMES.extend(
            f"{h:02d}:{m:02d}:{sec:02d}Z" for h in range(24) for m in range(60) for sec in range(60)
        )
    return prefix + _TIMES[rest]


def seeded_uuid(seed: int, label: str) -> str:
    digest = hashlib.sha256(f"dataverse_sim:{seed}:{label}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _guid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


# ----------------------------------------------------------------------------- schema

SYSTEMUSER_STORED: tuple[str, ...] = (
    "systemuserid",
    "versionnumber",
    "accessmode",
    "firstname",
    "lastname",
    "middlename",
    "nickname",
    "fullname",
    "internalemailaddress",
    "personalemailaddress",
    "domainname",
    "windowsliveid",
    "issyncwithdirectory",
    "isintegrationuser",
    "isdisabled",
    "disabledreason",
    "islicensed",
    "setupuser",
    "userlicensetype",
    "caltype",
    "invitestatuscode",
    "createdon",
    "modifiedon",
    "_businessunitid_value",
    "_parentsystemuserid_value",
    "azureactivedirectoryobjectid",
    "applicationid",
    "title",
    "jobtitle",
    "employeeid",
    "mobilephone",
    "address1_telephone1",
    "address1_line1",
    "address1_city",
    "address1_stateorprovince",
    "address1_postalcode",
    "address1_country",
)
_SI = {c: i for i, c in enumerate(SYSTEMUSER_STORED)}


def _translator(salt: str) -> dict[int, int]:
    digits = list("0123456789abcdef")
    random.Random(salt).shuffle(digits)
    return str.maketrans("0123456789abcdef", "".join(digits))


def _derived_guid(salt: str) -> Callable[[Row], str]:
    table = _translator(salt)

    def f(r: Row) -> str:
        return r[0].translate(table)

    return f


def _composite(r: Row) -> str | None:
    line1 = r[_SI["address1_line1"]]
    city = r[_SI["address1_city"]]
    state = r[_SI["address1_stateorprovince"]]
    postal = r[_SI["address1_postalcode"]]
    country = r[_SI["address1_country"]]
    tail = " ".join(x for x in (state, postal) if x)
    city_line = f"{city}, {tail}" if city and tail else (city or tail)
    parts = [p for p in (line1, city_line, country) if p]
    return "\r\n".join(parts) if parts else None


_FULLNAME = _SI["fullname"]

SYSTEMUSER_DERIVED: dict[str, Callable[[Row], Any]] = {
    "ownerid": lambda r: r[0],
    "yomifullname": lambda r: r[_FULLNAME],
    "address1_composite": _composite,
    "address1_addressid": _derived_guid("address1_addressid"),
    "address2_addressid": _derived_guid("address2_addressid"),
    "_queueid_value": _derived_guid("_queueid_value"),
    "_calendarid_value": _derived_guid("_calendarid_value"),
    "_defaultmailbox_value": _derived_guid("_defaultmailbox_value"),
}

READ_ONLY_COLUMNS = frozenset(
    {"systemuserid", "versionnumber", "fullname", "yomifullname", "ownerid", "address1_composite"}
)


def make_systemuser_table() -> Table:
    return Table(
        entity_set="systemusers",
        logical_name="systemuser",
        primary_key="systemuserid",
        primary_name="fullname",
        columns=schema.SYSTEMUSER_COLUMNS,
        types=schema.SYSTEMUSER_TYPES,
        stored=SYSTEMUSER_STORED,
        template=schema.DAVID_SO_RECORD,
        derived=SYSTEMUSER_DERIVED,
    )


def make_businessunit_table() -> Table:
    stored = (
        "businessunitid",
        "versionnumber",
        "name",
        "divisionname",
        "emailaddress",
        "isdisabled",
        "_parentbusinessunitid_value",
        "organizationid",
        "createdon",
        "modifiedon",
    )
    return Table(
        entity_set="businessunits",
        logical_name="businessunit",
        primary_key="businessunitid",
        primary_name="name",
        columns=schema.BUSINESSUNIT_COLUMNS,
        types=schema.BUSINESSUNIT_TYPES,
        stored=stored,
        template={},
        derived={},
    )


CONTACT_STORED: tuple[str, ...] = (
    "contactid",
    "versionnumber",
    "fullname",
    "firstname",
    "lastname",
    "emailaddress1",
    "telephone1",
    "jobtitle",
    "_parentcustomerid_value",
    "_ownerid_value",
    "statecode",
    "statuscode",
    "createdon",
    "modifiedon",
)


def make_contact_table() -> Table:
    return Table(
        entity_set="contacts",
        logical_name="contact",
        primary_key="contactid",
        primary_name="fullname",
        columns=schema.CONTACT_COLUMNS,
        types=schema.CONTACT_TYPES,
        stored=CONTACT_STORED,
        template={},
        derived={},
    )


CONTACT_DEPARTMENTS = ("Purchasing", "Operations", "Training", "Finance", "IT", None)


def generate_contacts(
    seed: int, count: int, owners: list[str], first_version: int = 1
) -> list[Row]:
    """Customer and partner contacts: people a company may train as learners."""
    rng = random.Random(f"{seed}:contacts")
    # The newer columns draw from their own stream, so the older ones keep their values.
    more = random.Random(f"{seed}:contacts:more")
    rows: list[Row] = []
    start = 1514764800
    for i in range(count):
        first = FIRST_NAMES[int(rng.random() * len(FIRST_NAMES))]
        last = LAST_NAMES[int(rng.random() * len(LAST_NAMES))]
        created = start + rng.random() * (DATASET_EPOCH - start)
        active = rng.random() < 0.9
        local = f"{ascii_fold(first)}.{ascii_fold(last).replace(' ', '')}".lower()
        city, _state, _postal, country, phone = LOCATIONS[int(more.random() * len(LOCATIONS))]
        extra = {
            "address1_city": city,
            "address1_country": country,
            "mobilephone": f"{phone}{int(more.random() * 10000):04d}"
            if more.random() < 0.5
            else None,
            "department": CONTACT_DEPARTMENTS[int(more.random() * len(CONTACT_DEPARTMENTS))],
        }
        rows.append(
            (
                _guid(rng),
                first_version + i,
                f"{first} {last}",
                first,
                last,
                f"{local}@example.com" if rng.random() < 0.9 else None,
                f"+1 555 01{int(rng.random() * 100):02d}" if rng.random() < 0.6 else None,
                JOB_TITLES[int(rng.random() * len(JOB_TITLES))] if rng.random() < 0.5 else None,
                None,
                owners[int(rng.random() * len(owners))] if owners else None,
                0 if active else 1,
                1 if active else 2,
                iso(created),
                iso(created),
                {k: v for k, v in extra.items() if v is not None} or None,
            )
        )
    return rows


# ----------------------------------------------------------------------------- pools

FIRST_NAMES = (
    "Aaliyah",
    "Aarav",
    "Adam",
    "Adriana",
    "Ahmed",
    "Aiko",
    "Alejandro",
    "Alice",
    "Amara",
    "Amelia",
    "Ana",
    "André",
    "Anna",
    "Arjun",
    "Astrid",
    "Ayşe",
    "Beatriz",
    "Benjamin",
    "Björn",
    "Camille",
    "Carlos",
    "Chen",
    "Chloé",
    "Chiara",
    "Daniel",
    "Diego",
    "Dmitri",
    "Elena",
    "Elif",
    "Emily",
    "Emma",
    "Erik",
    "Fatima",
    "Felix",
    "François",
    "Freya",
    "Gabriel",
    "Grace",
    "Hannah",
    "Hiroshi",
    "Ingrid",
    "Isabella",
    "Ivan",
    "Jack",
    "James",
    "Jana",
    "Javier",
    "Jiří",
    "José",
    "Julia",
    "Jürgen",
    "Kai",
    "Karolina",
    "Kenji",
    "Laila",
    "Lars",
    "Laura",
    "Leon",
    "Liam",
    "Lucía",
    "Łukasz",
    "Maja",
    "Małgorzata",
    "Marek",
    "María",
    "Mateo",
    "Mei",
    "Mia",
    "Mohammed",
    "Nadia",
    "Niamh",
    "Nikolai",
    "Noah",
    "Nora",
    "Olivia",
    "Oscar",
    "Paweł",
    "Priya",
    "Rafael",
    "Renée",
    "Ryan",
    "Sakura",
    "Samuel",
    "Sara",
    "Seán",
    "Siobhán",
    "Sofia",
    "Søren",
    "Stefan",
    "Thomas",
    "Tomás",
    "Umar",
    "Valentina",
    "Victoria",
    "Wei",
    "William",
    "Xavier",
    "Yara",
    "Yusuf",
    "Zoë",
    "Zuzanna",
)

LAST_NAMES = (
    "Abbott",
    "Adeyemi",
    "Andersen",
    "Bauer",
    "Becker",
    "Bianchi",
    "Brown",
    "Byrne",
    "Castillo",
    "Chen",
    "Costa",
    "D'Angelo",
    "da Silva",
    "de Vries",
    "Dubois",
    "Dąbrowski",
    "Eriksson",
    "Fernández",
    "Fischer",
    "García",
    "Gonçalves",
    "González",
    "Hansen",
    "Hernández",
    "Hoffmann",
    "Ivanova",
    "Jansen",
    "Johansson",
    "Johnson",
    "Kaur",
    "Kim",
    "Kowalski",
    "Kumar",
    "Larsen",
    "Lefèvre",
    "Li",
    "López",
    "MacDonald",
    "Martin",
    "Martínez",
    "McCarthy",
    "Meyer",
    "Moreau",
    "Müller",
    "Murphy",
    "Nakamura",
    "Nguyen",
    "Nielsen",
    "Novák",
    "O'Brien",
    "O'Connor",
    "O'Neill",
    "Okafor",
    "Østergaard",
    "Patel",
    "Pereira",
    "Petrov",
    "Popescu",
    "Quinn",
    "Rodríguez",
    "Rossi",
    "Sánchez",
    "Santos",
    "Schmidt",
    "Schneider",
    "Silva",
    "Singh",
    "Smith",
    "Smith-Jones",
    "Suzuki",
    "Tanaka",
    "Taylor",
    "Thompson",
    "van der Berg",
    "Wagner",
    "Walsh",
    "Wang",
    "Weber",
    "Williams",
    "Wójcik",
    "Yamamoto",
    "Yılmaz",
    "Zhang",
    "Zieliński",
)

JOB_TITLES = (
    "Account Executive",
    "Account Manager",
    "Business Analyst",
    "Chief Financial Officer",
    "Customer Success Manager",
    "Data Engineer",
    "Developer",
    "Director of Sales",
    "Field Service Technician",
    "HR Business Partner",
    "Learning & Development Lead",
    "Marketing Coordinator",
    "Marketing Manager",
    "Office Manager",
    "Operations Manager",
    "Product Owner",
    "Project Manager",
    "QA Engineer",
    "Sales Representative",
    "Senior Consultant",
    "Service Desk Agent",
    "Solutions Architect",
    "Support Engineer",
    "Team Lead, Customer Care",
    "Vice President, Sales",
)

# (city, state/province, postal code prefix, country, phone prefix)
LOCATIONS = (
    ("Seattle", "WA", "981", "United States", "+1 206 555 "),
    ("Redmond", "WA", "980", "United States", "+1 425 555 "),
    ("New York", "NY", "100", "United States", "+1 212 555 "),
    ("Austin", "TX", "787", "United States", "+1 512 555 "),
    ("Toronto", "ON", "M5V", "Canada", "+1 416 555 "),
    ("London", None, "EC1A", "United Kingdom", "+44 20 7946 "),
    ("Manchester", None, "M1", "United Kingdom", "+44 161 496 "),
    ("Dublin", None, "D02", "Ireland", "+353 1 555 "),
    ("München", "Bayern", "803", "Germany", "+49 89 5555 "),
    ("Köln", "NRW", "506", "Germany", "+49 221 5555 "),
    ("Paris", None, "750", "France", "+33 1 55 55 "),
    ("Kraków", None, "30-", "Poland", "+48 12 555 "),
    ("Łódź", None, "90-", "Poland", "+48 42 555 "),
    ("København", None, "1", "Denmark", "+45 55 "),
    ("São Paulo", "SP", "01", "Brazil", "+55 11 5555 "),
    ("Sevilla", "Andalucía", "410", "Spain", "+34 955 55 "),
    ("Tokyo", None, "100-", "Japan", "+81 3 5555 "),
    ("Bengaluru", "Karnataka", "560", "India", "+91 80 5555 "),
    ("Sydney", "NSW", "20", "Australia", "+61 2 5550 "),
)

STREETS = (
    "Main Street",
    "Market St",
    "High Street",
    "Elm Avenue",
    "Oak Road",
    "Königstraße",
    "Rue de la Paix",
    "ul. Floriańska",
    "Calle Mayor",
    "Harbour Way",
    "1st Ave NE",
    "Church Lane",
    "Station Road",
    "Vesterbrogade",
    "Rua Augusta",
)

EMAIL_DOMAINS = ("contoso.com", "Contoso.com", "fabrikam.com", "northwindtraders.com")

BUSINESS_UNITS = (
    ("Sales", "sales@contoso.com"),
    ("Marketing", "marketing@contoso.com"),
    ("Customer Service", None),
    ("Engineering", "eng@contoso.com"),
    ("EMEA Operations", None),
)

_FOLD = str.maketrans(
    {
        "ł": "l",
        "Ł": "L",
        "ø": "o",
        "Ø": "O",
        "ß": "ss",
        "đ": "d",
        "Đ": "D",
        "æ": "ae",
        "ı": "i",
        "ş": "s",
        "ğ": "g",
    }
)


def ascii_fold(text: str) -> str:
    text = text.translate(_FOLD)
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


# ----------------------------------------------------------------------------- store


@dataclass(frozen=True)
class Tenant:
    seed: int
    tenant_id: str
    tenant_domain: str
    client_id: str
    app_object_id: str
    app_user_id: str


def make_tenant(seed: int) -> Tenant:
    return Tenant(
        seed=seed,
        tenant_id=seeded_uuid(seed, "tenant"),
        tenant_domain=f"contoso{seed}.onmicrosoft.com",
        client_id=seeded_uuid(seed, "client"),
        app_object_id=seeded_uuid(seed, "app-user-object"),
        app_user_id=seeded_uuid(seed, "app-user"),
    )


class Store:
    """The organization's tables plus the global version counter.

    ``clock`` returns the simulator's current Unix time (used for createdon/modifiedon of
    changes made while it runs).
    """

    def __init__(
        self,
        users: int = 250,
        seed: int = 1,
        clock: Callable[[], float] = time.time,
        tenant: Tenant | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.seed = seed
        self.user_count = users
        self.clock = clock
        self.tenant = tenant or make_tenant(seed)
        self.systemusers = make_systemuser_table()
        self.businessunits = make_businessunit_table()
        self.contacts = make_contact_table()
        self.tombstones: list[tuple[int, str, str]] = []  # (version, entity set, id)
        self.version = 0
        self._rng = random.Random(f"{seed}:runtime")
        self.generate()

    # ------------------------------------------------------------------ generation
    def generate(self) -> None:
        with self.lock:
            # Millions of small tuples: keep the cyclic collector out of the way while they
            # are built, then move them out of its reach (they hold no reference cycles).
            was_enabled = gc.isenabled()
            gc.disable()
            try:
                bus, users, version = generate_rows(self.seed, self.user_count, self.tenant)
            finally:
                if was_enabled:
                    gc.enable()
            if self.user_count >= 50_000:
                gc.freeze()  # big organizations only: freezing also pins unrelated garbage
            self.businessunits.load(bus)
            owners = [r[0] for r in users[:50]]
            contacts = generate_contacts(
                self.seed, max(10, self.user_count // 5), owners, first_version=version + 1
            )
            self.contacts.load(contacts)
            self.systemusers.load(users)
            self.version = version + len(contacts)
            self.tombstones = []
            self._rng = random.Random(f"{self.seed}:runtime")

    def tables(self) -> dict[str, Table]:
        return {
            "systemusers": self.systemusers,
            "businessunits": self.businessunits,
            "contacts": self.contacts,
        }

    def next_version(self) -> int:
        with self.lock:
            self.version += 1
            return self.version

    def business_unit_ids(self) -> list[str]:
        with self.lock:
            return [r[0] for r in self.businessunits.rows.values()]

    # ------------------------------------------------------------------ users
    def _check_fields(self, fields: dict[str, Any], *, creating: bool) -> None:
        table = self.systemusers
        for key in fields:
            if key not in table.types:
                raise ValueError(f"unknown systemuser column {key!r}")
            if key in READ_ONLY_COLUMNS and not (creating and key == "systemuserid"):
                if key in ("fullname", "yomifullname"):
                    continue
                raise ValueError(f"systemuser column {key!r} is read-only")

    def create_user(self, **fields: Any) -> str:
        """Create a user; returns its systemuserid.  Unspecified columns get defaults."""
        self._check_fields(fields, creating=True)
        with self.lock:
            now = iso(self.clock())
            sid = str(fields.get("systemuserid") or _guid(self._rng)).lower()
            if self.systemusers.get(sid) is not None:
                raise ValueError(f"systemuser {sid} already exists")
            first = fields.get("firstname")
            last = fields.get("lastname")
            email = fields.get("internalemailaddress")
            values: dict[str, Any] = dict(schema.DAVID_SO_RECORD)
            values.update(
                {
                    "systemuserid": sid,
                    "accessmode": 0,
                    "issyncwithdirectory": True,
                    "isdisabled": False,
                    "islicensed": True,
                    "caltype": 0,
                    "userlicensetype": 6,
                    "invitestatuscode": 4,
                    "createdon": now,
                    "modifiedon": now,
                    "_businessunitid_value": ROOT_BUSINESS_UNIT_ID,
                    "azureactivedirectoryobjectid": _guid(self._rng),
                    "domainname": (email or "").lower(),
                    "windowsliveid": (email or "").lower() or None,
                    "_createdby_value": self.tenant.app_user_id,
                    "_modifiedby_value": self.tenant.app_user_id,
                    "address1_country": None,
                    "address1_composite": None,
                }
            )
            for derived in SYSTEMUSER_DERIVED:
                values.pop(derived, None)
            values.update(fields)
            values["systemuserid"] = sid
            if "fullname" not in fields:
                values["fullname"] = _fullname(first, last)
            values["versionnumber"] = self.next_version()
            row = self.systemusers.make_row(values)
            self.systemusers.put(row)
            return sid

    def update_user(self, user_id: str, **fields: Any) -> dict[str, Any]:
        """Change columns of a user; bumps versionnumber and modifiedon."""
        self._check_fields(fields, creating=False)
        with self.lock:
            table = self.systemusers
            row = table.get(user_id)
            if row is None:
                raise KeyError(user_id)
            values = table.record_dict(row)
            values.update(fields)
            if ("firstname" in fields or "lastname" in fields) and "fullname" not in fields:
                values["fullname"] = _fullname(values.get("firstname"), values.get("lastname"))
            if "yomifullname" not in fields:
                values.pop("yomifullname", None)
            if "address1_composite" not in fields:
                values.pop("address1_composite", None)
            values["versionnumber"] = self.next_version()
            if "modifiedon" not in fields:
                values["modifiedon"] = iso(self.clock())
            table.put(_rebuild(table, row, values))
            return table.record_dict(table.get(user_id))

    def disable_user(self, user_id: str) -> dict[str, Any]:
        return self.update_user(user_id, isdisabled=True)

    def enable_user(self, user_id: str) -> dict[str, Any]:
        return self.update_user(user_id, isdisabled=False)

    def delete_user(self, user_id: str) -> None:
        with self.lock:
            row = self.systemusers.remove(user_id)
            if row is None:
                raise KeyError(user_id)
            self.tombstones.append((self.next_version(), "systemusers", row[0]))

    # -- contacts ----------------------------------------------------------------

    def create_contact(self, **fields: Any) -> str:
        """Create a contact (statecode 0, active, unless given); returns its contactid."""
        with self.lock:
            now = iso(self.clock())
            cid = str(fields.get("contactid") or _guid(self._rng)).lower()
            values = {
                "statecode": 0,
                "statuscode": 1,
                "createdon": now,
                "modifiedon": now,
                **fields,
            }
            values["contactid"] = cid
            values.setdefault(
                "fullname", _fullname(values.get("firstname"), values.get("lastname"))
            )
            values["versionnumber"] = self.next_version()
            self.contacts.put(self.contacts.make_row(values))
            return cid

    def update_contact(self, contact_id: str, **fields: Any) -> dict[str, Any]:
        """Change columns of a contact; bumps versionnumber and modifiedon."""
        with self.lock:
            table = self.contacts
            row = table.get(contact_id)
            if row is None:
                raise KeyError(contact_id)
            values = {**table.record_dict(row), **fields}
            if ("firstname" in fields or "lastname" in fields) and "fullname" not in fields:
                values["fullname"] = _fullname(values.get("firstname"), values.get("lastname"))
            values["versionnumber"] = self.next_version()
            if "modifiedon" not in fields:
                values["modifiedon"] = iso(self.clock())
            table.put(table.make_row(values))
            return table.record_dict(table.get(contact_id))

    def delete_contact(self, contact_id: str) -> None:
        with self.lock:
            row = self.contacts.remove(contact_id)
            if row is None:
                raise KeyError(contact_id)
            self.tombstones.append((self.next_version(), "contacts", row[0]))

    def contacts_records(self) -> Iterator[dict[str, Any]]:
        with self.lock:
            rows = [self.contacts.get(guid) for guid in list(self.contacts.order)]
        for row in rows:
            if row is not None:
                yield self.contacts.record_dict(row)

    def get_user(self, user_id: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.systemusers.get(user_id)
            return None if row is None else self.systemusers.record_dict(row)

    def users(self) -> Iterator[dict[str, Any]]:
        """All users (full records) in primary-key order; a snapshot taken lazily in chunks."""
        table = self.systemusers
        last = None
        while True:
            with self.lock:
                chunk = []
                for row in table.iter_from(last):
                    chunk.append(row)
                    if len(chunk) >= 1000:
                        break
                records = [table.record_dict(r) for r in chunk]
            if not chunk:
                return
            yield from records
            last = guid_sort_key(chunk[-1][0])

    def count_users(self) -> int:
        with self.lock:
            return len(self.systemusers)

    def find_users(self, **criteria: Any) -> list[dict[str, Any]]:
        """Users whose columns equal the given values (exact match)."""
        return [u for u in self.users() if all(u.get(k) == v for k, v in criteria.items())]


def _rebuild(table: Table, old: Row, values: dict[str, Any]) -> Row:
    row = table.make_row(values)
    # keep derived ids stable for the row (they depend only on the key)
    old_extra = old[table.extra_index] or {}
    new_extra = dict(row[table.extra_index] or {})
    for col in SYSTEMUSER_DERIVED:
        if (
            col in old_extra
            and col not in new_extra
            and col
            not in (
                "yomifullname",
                "address1_composite",
            )
        ):
            new_extra[col] = old_extra[col]
    return (*row[: table.extra_index], new_extra or None)


def _fullname(first: str | None, last: str | None) -> str | None:
    parts = [p for p in (first, last) if p]
    return " ".join(parts) if parts else None


# ----------------------------------------------------------------------------- generator


def generate_rows(seed: int, count: int, tenant: Tenant) -> tuple[list[Row], list[Row], int]:
    """Generate business unit rows, user rows and the last version number used."""
    rng = random.Random(seed)
    bu_table = make_businessunit_table()
    users_table = make_systemuser_table()

    bu_created = iso(DATASET_EPOCH - 8 * 365 * 86400)
    bu_rows: list[Row] = [
        (
            ROOT_BUSINESS_UNIT_ID,
            900001,
            "Contoso",
            None,
            None,
            False,
            None,
            ORGANIZATION_ID,
            bu_created,
            bu_created,
            None,
        )
    ]
    bu_ids = [ROOT_BUSINESS_UNIT_ID]
    for i, (name, mail) in enumerate(BUSINESS_UNITS):
        bid = seeded_uuid(seed, f"bu:{name}")
        bu_ids.append(bid)
        bu_rows.append(
            (
                bid,
                900002 + i,
                name,
                name if i % 2 else None,
                mail,
                False,
                ROOT_BUSINESS_UNIT_ID,
                ORGANIZATION_ID,
                bu_created,
                bu_created,
                None,
            )
        )
    assert all(len(r) == bu_table.extra_index + 1 for r in bu_rows)

    stored = SYSTEMUSER_STORED
    nstored = len(stored)
    template_extra = None
    specials: list[dict[str, Any]] = []

    def special(**values: Any) -> None:
        specials.append(values)

    def app_user(
        name: str, appid: str, *, accessmode: int, email: str | None, sid: str, oid: str
    ) -> None:
        special(
            systemuserid=sid,
            firstname="#",
            lastname=name,
            fullname=f"# {name}",
            accessmode=accessmode,
            applicationid=appid,
            azureactivedirectoryobjectid=oid,
            internalemailaddress=email,
            domainname=email or f"{appid}@{tenant.tenant_domain}",
            windowsliveid=None,
            issyncwithdirectory=False,
            islicensed=False,
            userlicensetype=-1,
            caltype=0,
            invitestatuscode=0,
            _businessunitid_value=ROOT_BUSINESS_UNIT_ID,
        )

    app_user(
        "Learnexa",
        tenant.client_id,
        accessmode=4,
        email=None,
        sid=tenant.app_user_id,
        oid=tenant.app_object_id,
    )
    for name, mode, email in (
        ("Flow-RP", 4, None),
        ("PowerAppsDataPlaneBackend", 0, None),
        ("Omnichannel", 4, None),
        ("DataSyncService-EUR", 4, None),
        ("Power Platform Admin Service", 0, "bap_sa@microsoft.com"),
        ("CDSUserManagement", 4, "CDSUserManagement@onmicrosoft.com"),
    ):
        app_user(
            name,
            seeded_uuid(seed, f"app:{name}"),
            accessmode=mode,
            email=email,
            sid=seeded_uuid(seed, f"app-user:{name}"),
            oid=seeded_uuid(seed, f"app-oid:{name}"),
        )
    system_common = dict(
        issyncwithdirectory=False,
        islicensed=False,
        userlicensetype=-1,
        caltype=0,
        invitestatuscode=0,
        _businessunitid_value=ROOT_BUSINESS_UNIT_ID,
        azureactivedirectoryobjectid=None,
    )
    special(
        systemuserid=seeded_uuid(seed, "user:SYSTEM"),
        lastname="SYSTEM",
        fullname="SYSTEM",
        accessmode=0,
        internalemailaddress=None,
        domainname="",
        **system_common,
    )
    special(
        systemuserid=seeded_uuid(seed, "user:INTEGRATION"),
        lastname="INTEGRATION",
        fullname="INTEGRATION",
        accessmode=0,
        isdisabled=True,
        internalemailaddress=None,
        domainname="",
        disabledreason="System user",
        **system_common,
    )
    special(
        systemuserid=seeded_uuid(seed, "user:support"),
        firstname="Support",
        lastname="User",
        accessmode=3,
        internalemailaddress="crmoln@microsoft.com",
        domainname="crmoln@microsoft.com",
        **system_common,
    )
    special(
        systemuserid=seeded_uuid(seed, "user:delegated"),
        firstname="Delegated",
        lastname="Admin",
        accessmode=5,
        internalemailaddress="crmoln2@microsoft.com",
        domainname="crmoln2@microsoft.com",
        **system_common,
    )
    featured = (
        # first, last, email, extra
        ("Sync", "Service", "svc-sync@contoso.com", {"accessmode": 4, "islicensed": False}),
        ("Sam", "Taylor", "Sam.Taylor@contoso.com", {}),
        ("Samantha", "Taylor", "Sam.Taylor@contoso.com", {"jobtitle": "Marketing Manager"}),
        ("Zoë", "O'Brien", "Zoe.O'Brien+lms@Contoso.com", {}),
        ("Łukasz", "Wójcik", "lukasz.wojcik@fabrikam.com", {}),
        ("John", "Doe", "john_doe@contoso.com", {}),
        ("Johnny", "Doeman", "johnXdoe@contoso.com", {}),
        ("Seán", "O'Connor", "SEAN.OCONNOR@CONTOSO.COM", {}),
        (
            "Renée",
            "D'Angelo",
            "renee.d'angelo@northwindtraders.com",
            {"isdisabled": True, "disabledreason": "User left the company"},
        ),
        ("Søren", "Østergaard", None, {}),
        ("Percent", "Sign", "100%club@contoso.com", {}),
    )
    for first, last, email, extra in featured:
        special(
            systemuserid=seeded_uuid(seed, f"user:{first} {last}"),
            firstname=first,
            lastname=last,
            internalemailaddress=email,
            **extra,
        )

    n_random = max(0, count - 1 - len(specials))
    fullnames: dict[tuple[str, str], str] = {}
    seen_emails: set[str] = {
        s["internalemailaddress"].lower() for s in specials if s.get("internalemailaddress")
    }
    seen_emails.add(schema.DAVID_SO_RECORD["internalemailaddress"])

    # timestamps: created between 2018-01-01 and the dataset epoch
    start = 1514764800
    span = DATASET_EPOCH - start

    built_rows: list[list[Any] | None] = []
    modified_times: list[float] = []

    base_values = {c: None for c in stored}

    def finish(values: dict[str, Any], created: float, modified: float) -> None:
        row = [values.get(c) for c in stored]
        row[_SI["createdon"]] = iso(created)
        row[_SI["modifiedon"]] = row[_SI["createdon"]] if modified == created else iso(modified)
        built_rows.append(row)
        modified_times.append(modified)

    for sp in specials:
        values = dict(base_values)
        values.update(
            accessmode=0,
            issyncwithdirectory=True,
            isintegrationuser=False,
            isdisabled=False,
            islicensed=True,
            setupuser=False,
            userlicensetype=6,
            caltype=0,
            invitestatuscode=4,
            _businessunitid_value=ROOT_BUSINESS_UNIT_ID,
            azureactivedirectoryobjectid=seeded_uuid(seed, f"oid:{sp['systemuserid']}"),
        )
        values.update(sp)
        if "fullname" not in sp:
            values["fullname"] = _fullname(values.get("firstname"), values.get("lastname"))
        if "domainname" not in sp:
            email = values.get("internalemailaddress")
            values["domainname"] = (
                email or f"user{len(built_rows)}@{tenant.tenant_domain}"
            ).lower()
            values["windowsliveid"] = values["domainname"]
        created = start + rng.random() * span * 0.3
        finish(values, created, created + rng.random() * (DATASET_EPOCH - created))

    n_first = len(FIRST_NAMES)
    n_last = len(LAST_NAMES)
    n_domains = len(EMAIL_DOMAINS)
    n_locations = len(LOCATIONS)
    n_bus = len(bu_ids)
    n_titles = len(JOB_TITLES)
    n_streets = len(STREETS)
    folded_first = [ascii_fold(f) for f in FIRST_NAMES]
    folded_last = [ascii_fold(s).replace(" ", "") for s in LAST_NAMES]
    manager_pool: list[str] = []
    shared: dict[str, str] = {}  # interned repeated strings (phones, streets, postcodes)
    share = shared.setdefault
    disabled_reason = "User was disabled in Microsoft Entra ID"
    variant = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
    # One block of random bytes per user (much cheaper than many random() calls).
    # Layout: 0-15 id, 16-31 object id, 32.. choices and flags (see below).
    chunk_users = 4096
    block = b""
    for idx in range(n_random):
        o = (idx % chunk_users) * 64
        if o == 0:
            block = rng.randbytes(64 * chunk_users)
        h = block[o : o + 16].hex()
        sid = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant[h[16]]}{h[17:20]}-{h[20:]}"
        h = block[o + 16 : o + 32].hex()
        oid = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant[h[16]]}{h[17:20]}-{h[20:]}"
        b = block[o + 32 : o + 64]
        fi = b[0] % n_first
        li = b[1] % n_last
        first = FIRST_NAMES[fi]
        last = LAST_NAMES[li]
        full = fullnames.get((first, last))
        if full is None:
            full = fullnames[(first, last)] = f"{first} {last}"
        style = b[2] % 10
        f_ascii = folded_first[fi]
        l_ascii = folded_last[li]
        if style < 5:
            local = f"{f_ascii}.{l_ascii}".lower()
        elif style < 7:
            local = f"{f_ascii}.{l_ascii}"
        elif style < 8:
            local = f"{f_ascii[0]}{l_ascii}".lower()
        elif style < 9:
            local = f"{f_ascii}.{l_ascii}+crm".lower()
        else:
            local = f"{f_ascii}_{l_ascii}".lower()
        domain = EMAIL_DOMAINS[b[3] % n_domains]
        email = f"{local}@{domain}"
        key = email.lower()
        if key in seen_emails:
            email = f"{local}{idx}@{domain}"
            key = email.lower()
        seen_emails.add(key)
        if key == email:
            key = email
        upn = key if domain != "northwindtraders.com" else f"{local.lower()}@{tenant.tenant_domain}"
        roll = b[4]  # 0-255: ~2 % administrative, ~1 % read, ~0.5 % non-interactive
        accessmode = 0 if roll >= 9 else (1 if roll < 5 else (2 if roll < 8 else 4))
        disabled = b[5] < 15  # ~6 %
        no_email = b[6] < 5  # ~2 %
        city, state, postal_prefix, country, phone_prefix = LOCATIONS[b[7] % n_locations]
        created = start + span * ((b[8] << 16 | b[9] << 8 | b[10]) / 16777216)
        if b[11] < 77:  # ~30 % never modified
            modified = created
            created_text = modified_text = iso(created)
        else:
            modified = created + (DATASET_EPOCH - created) * (
                (b[12] << 16 | b[13] << 8 | b[14]) / 16777216
            )
            created_text = iso(created)
            modified_text = iso(modified)
        title = JOB_TITLES[b[15] % n_titles]
        manager = manager_pool[b[17] % len(manager_pool)] if manager_pool and b[16] < 180 else None
        row = [
            sid,
            None,  # versionnumber, assigned below
            accessmode,
            first,
            last,
            None,
            None,
            full,
            None if no_email else email,
            None,
            upn,
            upn,
            True,
            False,
            disabled,
            disabled_reason if disabled else None,
            not disabled,
            False,
            6,
            0,
            4,
            created_text,
            modified_text,
            bu_ids[b[18] % n_bus],
            manager,
            oid,
            None,
            title if b[19] < 128 else None,
            title,
            f"E{100000 + idx}" if b[20] < 218 else None,
            share(p, p)
            if b[21] < 179 and (p := phone_prefix + _DIGITS4[(b[22] << 8 | b[23]) % 10000])
            else None,
            share(p, p)
            if b[24] < 128 and (p := phone_prefix + _DIGITS4[(b[25] << 8 | b[26]) % 10000])
            else None,
            share(p, p)
            if (p := f"{1 + (b[27] << 8 | b[28]) % 399} {STREETS[b[29] % n_streets]}")
            else None,
            city,
            state,
            share(p, p) if (p := postal_prefix + _DIGITS2[b[30] % 100]) else None,
            country,
        ]
        built_rows.append(row)
        modified_times.append(modified)
        if b[31] < 26 and len(manager_pool) < 200:
            manager_pool.append(sid)
    del seen_emails, shared

    # versions follow modification order, like SQL Server rowversion
    order = sorted(range(len(built_rows)), key=modified_times.__getitem__)
    modified_times.clear()
    version = FIRST_VERSION - 1
    user_rows: list[Row] = []
    append = user_rows.append
    for i in order:
        row = built_rows[i]
        built_rows[i] = None
        version += 1
        row[1] = version
        row.append(template_extra)
        append(tuple(row))
    built_rows.clear()
    del order
    assert not user_rows or len(user_rows[0]) == nstored + 1
    david = users_table.make_row(schema.DAVID_SO_RECORD)
    user_rows.append(david)
    return bu_rows, user_rows, version
