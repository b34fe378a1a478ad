"""Match: the platform users a page's records could be, found before planning.

Two queries per page, whatever its size (users by linked id; by Entra object id or email),
so that planning is Python work only. What was looked up is kept (Candidates.keys): should
writing the page before change any of it, the page is matched again (see flow.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat

import orjson
from django.db import connection
from django.db.models import DEFERRED

from learnexa.accounts.models import Company, User

from ..cleaning import parse_guid
from ..mapping import MappedRecord

# The users fields holding Dynamics and Entra ID GUIDs.
GUID_FIELDS = ("dynamics_systemuser_id", "dynamics_contact_id", "entra_object_id")


# What matching and planning never read of a user: left deferred, since converting every
# column of thousands of rows (the dates above all) was most of matching's time.
UNREAD_FIELDS = frozenset(
    {"password", "last_login", "sign_in_epoch", "invitation_sent_at", "created_at", "updated_at"}
)


def _users_where(company: Company, conditions: dict[str, list]) -> list[User]:
    """The company's users whose column is one of its values, for any of `conditions`
    ({column: values}; values are GUIDs as parse_guid gives them, or lowercased emails for
    "lower(email)"). The users' GUIDs are text too, so that they compare with the records'.

    Each list goes as one JSON parameter: thousands of placeholders, or an array of UUIDs,
    cost more to convert than the query takes. Each value is one index lookup, never a scan
    testing each row against every value.
    """
    quote = connection.ops.quote_name
    table, company_id = quote(User._meta.db_table), quote("company_id")
    postgresql = connection.vendor == "postgresql"
    columns = _Columns(connection)
    statements, params = [], []
    for column, values in conditions.items():
        if not values:
            continue
        uuids = column != "lower(email)"
        if uuids:
            expression = f"u.{quote(User._meta.get_field(column).column)}"
        else:
            # Emails as the index has them (see accounts.models.CaseFolded).
            email = quote("email")
            expression = f"LOWER(u.{email})" if postgresql else f"u.{email} COLLATE NOCASE"
        if postgresql:
            # One index lookup per value, whatever the statistics say: during a first sync
            # they say the company has almost no users, and PostgreSQL would otherwise read
            # all of them for every page (OFFSET 0 keeps the subquery from being merged).
            statements.append(
                f"SELECT {columns.select} FROM jsonb_array_elements_text(%s::jsonb) AS k(v) "
                f"CROSS JOIN LATERAL (SELECT * FROM {table} u WHERE u.{company_id} = %s AND "
                f"{expression} = k.v{'::uuid' if uuids else ''} OFFSET 0) u"
            )
        else:
            # SQLite probes the index for each value of the list, in the list's order (a
            # CROSS JOIN keeps that order): an IN (subquery) would first copy and sort them.
            statements.append(
                f"SELECT {columns.select} FROM json_each(%s) AS k CROSS JOIN {table} u "
                f"WHERE {expression} = k.value AND u.{company_id} = %s"
            )
            values = [value.replace("-", "") for value in values] if uuids else values
        params += [orjson.dumps(values).decode(), company.pk]
    if not statements:
        return []
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(statements), params)
        rows = cursor.fetchall()
    return list({user.pk: user for user in columns.users(rows)}.values())


class _Columns:
    """The users columns matching reads, and the User instances made of them: each column
    converted as a whole, GUIDs straight to their text, the unread fields deferred."""

    def __init__(self, connection):
        self.connection = connection
        self.fields = [f for f in User._meta.concrete_fields if f.name not in UNREAD_FIELDS]
        quote, native = connection.ops.quote_name, connection.vendor == "postgresql"
        self.select = ", ".join(
            f"u.{quote(f.column)}::text"
            if native and f.name in GUID_FIELDS
            else f"u.{quote(f.column)}"
            for f in self.fields
        )

    def users(self, rows: list[tuple]) -> list[User]:
        if not rows:
            return []
        read = dict(zip(self.fields, zip(*rows, strict=True), strict=True))
        columns = [
            self._convert(f, read[f]) if f in read else repeat(DEFERRED)
            for f in User._meta.concrete_fields
        ]
        names, alias = [f.attname for f in User._meta.concrete_fields], self.connection.alias
        # Deferred columns repeat without end: the rows' columns decide the length.
        return [User.from_db(alias, names, values) for values in zip(*columns, strict=False)]

    def _convert(self, field, values: tuple) -> Sequence:
        if field.name in GUID_FIELDS:
            return values if self.connection.vendor == "postgresql" else _guid_texts(values)
        column, connection = field.get_col(User._meta.db_table), self.connection
        converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        for convert in converters:
            values = [convert(value, column, connection) for value in values]
        return values


def _guid_texts(hexes: tuple) -> list:
    """GUIDs stored as 32 hex digits (SQLite), as parse_guid writes them."""
    return [
        None if h is None else f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" for h in hexes
    ]


def _match_candidates(company: Company, records: list[MappedRecord], link: str):
    ids = [r.record_id for r in records if r.record_id]
    by_id = {getattr(u, link): u for u in _users_where(company, {link: ids})}
    # The rest only for records not linked yet, or whose email changed: in a steady state
    # a page costs one query, and otherwise two.
    unsettled = [
        r
        for r in records
        if r.email_key
        and (r.record_id not in by_id or by_id[r.record_id].email.lower() != r.email_key)
    ]
    entra_ids = {r.entra_object_id for r in unsettled if r.entra_object_id}
    emails = {r.email_key for r in unsettled}
    by_entra, by_email = {}, {}
    conditions = {"entra_object_id": list(entra_ids), "lower(email)": list(emails)}
    for u in _users_where(company, conditions):
        user = by_id.get(getattr(u, link), u)
        if u.entra_object_id in entra_ids:
            by_entra[u.entra_object_id] = user
        if (email := u.email.lower()) in emails:
            by_email[email] = user
    return by_id, by_entra, by_email


@dataclass
class Candidates:
    """The platform users a page's records could be, found before planning so that planning
    is Python work only."""

    by_id: dict
    by_entra: dict
    by_email: dict
    # Active users linked to records a delta reports deleted.
    deleted: list[User]
    # Everything looked up and found (record ids, Entra object ids, emails, user ids): if
    # writing another page changes any of them, this page must be matched again.
    keys: set


def match_page(company: Company, records: list[MappedRecord], link: str, deleted_ids=()):
    by_id, by_entra, by_email = _match_candidates(company, records, link)
    deleted = []
    if deleted_ids:
        deleted = list(
            User.objects.filter(company=company, is_active=True, **{f"{link}__in": deleted_ids})
        )
    keys = {parse_guid(i) for i in deleted_ids}
    for r in records:
        keys.update((r.record_id, r.entra_object_id, r.email_key))
    for users in (by_id, by_entra, by_email):
        keys.update(user.pk for user in users.values())
    keys.update(user.pk for user in deleted)
    keys.discard(None)
    return Candidates(by_id, by_entra, by_email, deleted, keys)
