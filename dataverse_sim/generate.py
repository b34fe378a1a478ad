"""The generated organization: business units, system users and contacts.

Everything is derived from the seed (the same seed gives the same users, ids, names and
version numbers).  The functions below draw from one ``random.Random(seed)`` in a fixed
order, so their order in ``generate_rows`` is part of the generated data.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from . import schema
from .layout import (
    ORGANIZATION_ID,
    ROOT_BUSINESS_UNIT_ID,
    SYSTEMUSER_INDEX,
    SYSTEMUSER_STORED,
    make_businessunit_table,
    make_systemuser_table,
)
from .pools import (
    BUSINESS_UNITS,
    CONTACT_DEPARTMENTS,
    EMAIL_DOMAINS,
    FEATURED_PEOPLE,
    FIRST_NAMES,
    JOB_TITLES,
    LAST_NAMES,
    LOCATIONS,
    MICROSOFT_APPLICATIONS,
    STREETS,
    ascii_fold,
)
from .tables import Row
from .values import full_name, iso, random_guid, seeded_uuid

if TYPE_CHECKING:
    from .data import Tenant

# Generated rows' timestamps lie before this instant; changes made while the simulator
# runs use the simulator's clock (real time plus any advance).
DATASET_EPOCH = 1751241600  # 2025-06-30T00:00:00Z
# Generated people were created between 2018-01-01 and the dataset epoch.
CREATED_FROM = 1514764800
FIRST_VERSION = 1_000_001

_DIGITS2 = tuple(f"{i:02d}" for i in range(100))
_DIGITS4 = tuple(f"{i:04d}" for i in range(10000))
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def generate_rows(seed: int, count: int, tenant: Tenant) -> tuple[list[Row], list[Row], int]:
    """Generate business unit rows, user rows and the last version number used."""
    rng = random.Random(seed)
    bu_rows, bu_ids = business_unit_rows(seed)
    specials = [
        *application_users(seed, tenant),
        *system_users(seed),
        *featured_users(seed),
    ]
    built_rows, modified_times = special_user_rows(seed, specials, rng, tenant)
    seen_emails = {
        s["internalemailaddress"].lower() for s in specials if s.get("internalemailaddress")
    }
    seen_emails.add(schema.DAVID_SO_RECORD["internalemailaddress"])
    random_user_rows(
        rng,
        max(0, count - 1 - len(specials)),
        seen_emails,
        bu_ids,
        tenant,
        built_rows,
        modified_times,
    )
    del seen_emails
    user_rows, version = number_by_modification(built_rows, modified_times)
    user_rows.append(make_systemuser_table().make_row(schema.DAVID_SO_RECORD))
    return bu_rows, user_rows, version


def business_unit_rows(seed: int) -> tuple[list[Row], list[str]]:
    """The root business unit (Contoso) and its child units, with their ids."""
    created = iso(DATASET_EPOCH - 8 * 365 * 86400)
    rows: list[Row] = [
        (
            ROOT_BUSINESS_UNIT_ID,
            900001,
            "Contoso",
            None,
            None,
            False,
            None,
            ORGANIZATION_ID,
            created,
            created,
            None,
        )
    ]
    ids = [ROOT_BUSINESS_UNIT_ID]
    for i, (name, mail) in enumerate(BUSINESS_UNITS):
        bid = seeded_uuid(seed, f"bu:{name}")
        ids.append(bid)
        rows.append(
            (
                bid,
                900002 + i,
                name,
                name if i % 2 else None,
                mail,
                False,
                ROOT_BUSINESS_UNIT_ID,
                ORGANIZATION_ID,
                created,
                created,
                None,
            )
        )
    width = make_businessunit_table().extra_index + 1
    assert all(len(r) == width for r in rows)
    return rows, ids


def _application_user(
    name: str, appid: str, tenant: Tenant, *, accessmode: int, email: str | None, sid: str, oid: str
) -> dict[str, Any]:
    """The columns of one application user (``# <name>``, unlicensed, in the root unit)."""
    return dict(
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


def application_users(seed: int, tenant: Tenant) -> list[dict[str, Any]]:
    """The application users: the product's app registration first, then Microsoft's."""
    users = [
        _application_user(
            "Learnexa",
            tenant.client_id,
            tenant,
            accessmode=4,
            email=None,
            sid=tenant.app_user_id,
            oid=tenant.app_object_id,
        )
    ]
    for name, mode, email in MICROSOFT_APPLICATIONS:
        users.append(
            _application_user(
                name,
                seeded_uuid(seed, f"app:{name}"),
                tenant,
                accessmode=mode,
                email=email,
                sid=seeded_uuid(seed, f"app-user:{name}"),
                oid=seeded_uuid(seed, f"app-oid:{name}"),
            )
        )
    return users


def system_users(seed: int) -> list[dict[str, Any]]:
    """SYSTEM, INTEGRATION, the support user and the delegated admin."""
    common = dict(
        issyncwithdirectory=False,
        islicensed=False,
        userlicensetype=-1,
        caltype=0,
        invitestatuscode=0,
        _businessunitid_value=ROOT_BUSINESS_UNIT_ID,
        azureactivedirectoryobjectid=None,
    )
    return [
        dict(
            systemuserid=seeded_uuid(seed, "user:SYSTEM"),
            lastname="SYSTEM",
            fullname="SYSTEM",
            accessmode=0,
            internalemailaddress=None,
            domainname="",
            **common,
        ),
        dict(
            systemuserid=seeded_uuid(seed, "user:INTEGRATION"),
            lastname="INTEGRATION",
            fullname="INTEGRATION",
            accessmode=0,
            isdisabled=True,
            internalemailaddress=None,
            domainname="",
            disabledreason="System user",
            **common,
        ),
        dict(
            systemuserid=seeded_uuid(seed, "user:support"),
            firstname="Support",
            lastname="User",
            accessmode=3,
            internalemailaddress="crmoln@microsoft.com",
            domainname="crmoln@microsoft.com",
            **common,
        ),
        dict(
            systemuserid=seeded_uuid(seed, "user:delegated"),
            firstname="Delegated",
            lastname="Admin",
            accessmode=5,
            internalemailaddress="crmoln2@microsoft.com",
            domainname="crmoln2@microsoft.com",
            **common,
        ),
    ]


def featured_users(seed: int) -> list[dict[str, Any]]:
    """The people the design note calls out: a service account, shared emails, wildcard and
    non-ASCII traps, a disabled person and one without email."""
    return [
        dict(
            systemuserid=seeded_uuid(seed, f"user:{first} {last}"),
            firstname=first,
            lastname=last,
            internalemailaddress=email,
            **extra,
        )
        for first, last, email, extra in FEATURED_PEOPLE
    ]


def special_user_rows(
    seed: int, specials: list[dict[str, Any]], rng: random.Random, tenant: Tenant
) -> tuple[list[list[Any] | None], list[float]]:
    """Rows (as lists, versionnumber unset) for the given users, and their modified times."""
    rows: list[list[Any] | None] = []
    modified_times: list[float] = []
    base_values = {c: None for c in SYSTEMUSER_STORED}
    created_index = SYSTEMUSER_INDEX["createdon"]
    modified_index = SYSTEMUSER_INDEX["modifiedon"]
    span = DATASET_EPOCH - CREATED_FROM
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
            values["fullname"] = full_name(values.get("firstname"), values.get("lastname"))
        if "domainname" not in sp:
            email = values.get("internalemailaddress")
            values["domainname"] = (email or f"user{len(rows)}@{tenant.tenant_domain}").lower()
            values["windowsliveid"] = values["domainname"]
        created = CREATED_FROM + rng.random() * span * 0.3
        modified = created + rng.random() * (DATASET_EPOCH - created)
        row = [values.get(c) for c in SYSTEMUSER_STORED]
        row[created_index] = iso(created)
        row[modified_index] = row[created_index] if modified == created else iso(modified)
        rows.append(row)
        modified_times.append(modified)
    return rows, modified_times


_FOLDED_FIRST = [ascii_fold(f) for f in FIRST_NAMES]
_FOLDED_LAST = [ascii_fold(s).replace(" ", "") for s in LAST_NAMES]


def random_user_rows(
    rng: random.Random,
    count: int,
    seen_emails: set[str],
    bu_ids: list[str],
    tenant: Tenant,
    rows: list[list[Any] | None],
    modified_times: list[float],
) -> None:
    """Append ``count`` random people to ``rows`` (and their modified times), with emails
    unique among ``seen_emails`` (which grows)."""
    n_first = len(FIRST_NAMES)
    n_last = len(LAST_NAMES)
    n_domains = len(EMAIL_DOMAINS)
    n_locations = len(LOCATIONS)
    n_bus = len(bu_ids)
    n_titles = len(JOB_TITLES)
    n_streets = len(STREETS)
    folded_first = _FOLDED_FIRST
    folded_last = _FOLDED_LAST
    variant = _VARIANT
    start = CREATED_FROM
    span = DATASET_EPOCH - start
    fullnames: dict[tuple[str, str], str] = {}
    manager_pool: list[str] = []
    shared: dict[str, str] = {}  # interned repeated strings (phones, streets, postcodes)
    share = shared.setdefault
    disabled_reason = "User was disabled in Microsoft Entra ID"
    # One block of random bytes per user (much cheaper than many random() calls).
    # Layout: 0-15 id, 16-31 object id, 32.. choices and flags (see below).
    chunk_users = 4096
    block = b""
    for idx in range(count):
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
            None,  # versionnumber, assigned by number_by_modification
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
        rows.append(row)
        modified_times.append(modified)
        if b[31] < 26 and len(manager_pool) < 200:
            manager_pool.append(sid)


def number_by_modification(
    rows: list[list[Any] | None], modified_times: list[float]
) -> tuple[list[Row], int]:
    """Assign version numbers in modification order (like SQL Server rowversion); returns
    the finished row tuples in that order and the last version (``rows`` is emptied)."""
    order = sorted(range(len(rows)), key=modified_times.__getitem__)
    modified_times.clear()
    version = FIRST_VERSION - 1
    user_rows: list[Row] = []
    append = user_rows.append
    for i in order:
        row = rows[i]
        rows[i] = None
        version += 1
        row[1] = version
        row.append(None)  # no per-row overrides
        append(tuple(row))
    rows.clear()
    del order
    assert not user_rows or len(user_rows[0]) == len(SYSTEMUSER_STORED) + 1
    return user_rows, version


def generate_contacts(
    seed: int, count: int, owners: list[str], first_version: int = 1
) -> list[Row]:
    """Customer and partner contacts: people a company may train as learners."""
    rng = random.Random(f"{seed}:contacts")
    # The newer columns draw from their own stream, so the older ones keep their values.
    more = random.Random(f"{seed}:contacts:more")
    rows: list[Row] = []
    for i in range(count):
        first = FIRST_NAMES[int(rng.random() * len(FIRST_NAMES))]
        last = LAST_NAMES[int(rng.random() * len(LAST_NAMES))]
        created = CREATED_FROM + rng.random() * (DATASET_EPOCH - CREATED_FROM)
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
                random_guid(rng),
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
