"""``Prefer: odata.include-annotations`` support: formatted values and lookup annotations."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from . import schema
from .tables import Table

FORMATTED = "@OData.Community.Display.V1.FormattedValue"
LOOKUP_NAME = "@Microsoft.Dynamics.CRM.lookuplogicalname"
NAV_PROPERTY = "@Microsoft.Dynamics.CRM.associatednavigationproperty"

PICKLISTS: dict[str, dict[int, str]] = {
    "statecode": {0: "Active", 1: "Inactive"},
    "statuscode": {1: "Active", 2: "Inactive"},
    "accessmode": {
        0: "Read-Write",
        1: "Administrative",
        2: "Read",
        3: "Support User",
        4: "Non-interactive",
        5: "Delegated Admin",
    },
    "caltype": {
        0: "Professional",
        1: "Administrative",
        2: "Basic",
        3: "Device Professional",
        4: "Device Basic",
        5: "Essential",
        6: "Device Essential",
        7: "Enterprise",
        8: "Device Enterprise",
    },
    "invitestatuscode": {
        0: "Invitation Not Sent",
        1: "Invited",
        2: "Invitation Near Expired",
        3: "Invitation Expired",
        4: "Invitation Accepted",
        5: "Invitation Rejected",
        6: "Invitation Revoked",
    },
    "preferredaddresscode": {1: "Mailing Address", 2: "Other Address"},
    "preferredemailcode": {1: "Default Value"},
    "preferredphonecode": {1: "Main Phone", 2: "Other Phone", 3: "Home Phone", 4: "Mobile Phone"},
    "incomingemaildeliverymethod": {
        0: "None",
        1: "Microsoft Dynamics 365 for Outlook",
        2: "Server-Side Synchronization or Email Router",
        3: "Forward Mailbox",
    },
    "outgoingemaildeliverymethod": {
        0: "None",
        1: "Microsoft Dynamics 365 for Outlook",
        2: "Server-Side Synchronization or Email Router",
    },
    "emailrouteraccessapproval": {0: "Empty", 1: "Approved", 2: "Pending Approval", 3: "Rejected"},
    "address1_addresstypecode": {1: "Default Value"},
    "address2_addresstypecode": {1: "Default Value"},
    "address1_shippingmethodcode": {1: "Default Value"},
    "address2_shippingmethodcode": {1: "Default Value"},
}
BOOLEANS = {"isdisabled": ("Enabled", "Disabled")}
LOOKUP_TARGETS = {
    "_ownerid_value": ("systemuser", "ownerid"),
    "_parentcustomerid_value": ("account", "parentcustomerid_account"),
    "_businessunitid_value": ("businessunit", "businessunitid"),
    "_parentsystemuserid_value": ("systemuser", "parentsystemuserid"),
    "_createdby_value": ("systemuser", "createdby"),
    "_modifiedby_value": ("systemuser", "modifiedby"),
    "_createdonbehalfby_value": ("systemuser", "createdonbehalfby"),
    "_modifiedonbehalfby_value": ("systemuser", "modifiedonbehalfby"),
    "_parentbusinessunitid_value": ("businessunit", "parentbusinessunitid"),
    "_queueid_value": ("queue", "queueid"),
    "_calendarid_value": ("calendar", "calendarid"),
    "_defaultmailbox_value": ("mailbox", "defaultmailbox"),
    "_territoryid_value": ("territory", "territoryid"),
    "_siteid_value": ("site", "siteid"),
    "_positionid_value": ("position", "positionid"),
    "_transactioncurrencyid_value": ("transactioncurrency", "transactioncurrencyid"),
    "_mobileofflineprofileid_value": ("mobileofflineprofile", "mobileofflineprofileid"),
}


def wanted(annotations: str | None) -> tuple[bool, bool]:
    """(formatted values?, lookup annotations?) for a Prefer include-annotations value."""
    if annotations is None:
        return False, False
    names = [a.strip() for a in annotations.strip('"').split(",")]

    def match(target: str) -> bool:
        for name in names:
            if name == "*" or name == target:
                return True
            if name.endswith("*") and target.startswith(name[:-1]):
                return True
        return False

    return (
        match("OData.Community.Display.V1.FormattedValue"),
        match("Microsoft.Dynamics.CRM.lookuplogicalname")
        or match("Microsoft.Dynamics.CRM.associatednavigationproperty"),
    )


def format_datetime(value: str) -> str:
    t = time.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    hour = t.tm_hour % 12 or 12
    return f"{t.tm_mon}/{t.tm_mday}/{t.tm_year} {hour}:{t.tm_min:02d} {'PM' if t.tm_hour >= 12 else 'AM'}"


def annotator(
    table: Table, names: Callable[[str, str], str | None], formatted: bool, lookups: bool
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Returns a function adding annotations to a rendered record (annotations first)."""

    def annotate(record: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in record.items():
            if key.startswith("@") or value is None:
                out[key] = value
                continue
            typ = table.types.get(key)
            if key in LOOKUP_TARGETS and key != f"_{table.primary_key}_value":
                target, nav = LOOKUP_TARGETS[key]
                if formatted:
                    label = names(target, value)
                    if label is not None:
                        out[key + FORMATTED] = label
                if lookups:
                    out[key + NAV_PROPERTY] = nav
                    out[key + LOOKUP_NAME] = target
            elif formatted and typ == schema.BOOL:
                off, on = BOOLEANS.get(key, ("No", "Yes"))
                out[key + FORMATTED] = on if value else off
            elif formatted and key in PICKLISTS:
                out[key + FORMATTED] = PICKLISTS[key].get(value, str(value))
            elif formatted and typ == schema.INT:
                out[key + FORMATTED] = f"{value:,}"
            elif formatted and typ == schema.DATETIME:
                out[key + FORMATTED] = format_datetime(value)
            out[key] = value
        return out

    return annotate
