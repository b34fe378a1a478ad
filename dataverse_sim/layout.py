"""How the organization's tables store their rows: the stored columns of ``systemuser``,
``businessunit`` and ``contact``, the ``systemuser`` columns computed from a row, and the
``Table`` for each (see ``tables.Table`` for the row format)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from . import schema
from .tables import Row, Table

ORGANIZATION_ID = schema.DAVID_SO_RECORD["organizationid"]
ROOT_BUSINESS_UNIT_ID = schema.DAVID_SO_RECORD["_businessunitid_value"]

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
SYSTEMUSER_INDEX = {c: i for i, c in enumerate(SYSTEMUSER_STORED)}


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
    line1 = r[SYSTEMUSER_INDEX["address1_line1"]]
    city = r[SYSTEMUSER_INDEX["address1_city"]]
    state = r[SYSTEMUSER_INDEX["address1_stateorprovince"]]
    postal = r[SYSTEMUSER_INDEX["address1_postalcode"]]
    country = r[SYSTEMUSER_INDEX["address1_country"]]
    tail = " ".join(x for x in (state, postal) if x)
    city_line = f"{city}, {tail}" if city and tail else (city or tail)
    parts = [p for p in (line1, city_line, country) if p]
    return "\r\n".join(parts) if parts else None


_FULLNAME = SYSTEMUSER_INDEX["fullname"]

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
