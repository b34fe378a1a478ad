"""The simulated organization's data: its tenant identity and the ``Store`` of its tables.

The rows are generated deterministically from the seed (see ``generate``).  The store is
thread-safe: every read or write of the tables goes through ``store.lock``.
"""

from __future__ import annotations

import gc
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from . import schema
from .generate import generate_contacts, generate_rows
from .layout import (
    READ_ONLY_COLUMNS,
    ROOT_BUSINESS_UNIT_ID,
    SYSTEMUSER_DERIVED,
    make_businessunit_table,
    make_contact_table,
    make_systemuser_table,
)
from .tables import Row, Table, guid_sort_key
from .values import full_name, iso, random_guid, seeded_uuid


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
            sid = str(fields.get("systemuserid") or random_guid(self._rng)).lower()
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
                    "azureactivedirectoryobjectid": random_guid(self._rng),
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
                values["fullname"] = full_name(first, last)
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
                values["fullname"] = full_name(values.get("firstname"), values.get("lastname"))
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
            cid = str(fields.get("contactid") or random_guid(self._rng)).lower()
            values = {
                "statecode": 0,
                "statuscode": 1,
                "createdon": now,
                "modifiedon": now,
                **fields,
            }
            values["contactid"] = cid
            values.setdefault(
                "fullname", full_name(values.get("firstname"), values.get("lastname"))
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
                values["fullname"] = full_name(values.get("firstname"), values.get("lastname"))
            values["versionnumber"] = self.next_version()
            if "modifiedon" not in fields:
                values["modifiedon"] = iso(self.clock())
            table.put(table.make_row(values))
            return table.record_dict(table.get(contact_id))

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
