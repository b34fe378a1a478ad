"""Compact in-memory tables with primary-key ordering like SQL Server's.

Each row is a tuple of the table's *stored* columns (in ``stored`` order) followed by one
extra slot holding either ``None`` or a small dict of per-row overrides for columns that
are otherwise constant (``template``) or computed (``derived``).  This keeps a million
users well under the memory budget: most of the ~130 systemuser columns are the same for
every generated user, so they are not stored per row.

Rows are kept in a dict keyed by their primary key, plus a list of the keys sorted by
``guid_sort_key``.  The sort key reproduces SQL Server's ``uniqueidentifier`` ordering (the
last six bytes are most significant, then bytes 8-9, 6-7, 4-5 and finally 0-3), which is
the order Dataverse pages a table in when no other order is requested.

A change log (each row's version when it was written, oldest first) serves change tracking:
a delta reads the rows changed since a version without looking at the others, as
Dataverse's own change tracking does.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Iterator, Mapping
from typing import Any

Row = tuple


def guid_sort_key(guid: str) -> str:
    """SQL Server ordering key of a lower-case GUID string."""
    return guid[24:36] + guid[19:23] + guid[14:18] + guid[9:13] + guid[0:8]


def guid_from_sort_key(key: str) -> str:
    return f"{key[24:32]}-{key[20:24]}-{key[16:20]}-{key[12:16]}-{key[0:12]}"


class Table:
    def __init__(
        self,
        *,
        entity_set: str,
        logical_name: str,
        primary_key: str,
        primary_name: str,
        columns: tuple[str, ...],
        types: Mapping[str, str],
        stored: tuple[str, ...],
        template: Mapping[str, Any],
        derived: Mapping[str, Callable[[Row], Any]],
    ) -> None:
        self.entity_set = entity_set
        self.logical_name = logical_name
        self.primary_key = primary_key
        self.primary_name = primary_name
        self.columns = columns
        self.types = dict(types)
        self.stored = stored
        self.stored_index = {c: i for i, c in enumerate(stored)}
        self.extra_index = len(stored)
        self.template = {c: template.get(c) for c in columns if c not in self.stored_index}
        self.derived = dict(derived)
        self.version_index = self.stored_index["versionnumber"]
        assert self.stored_index[primary_key] == 0, "primary key must be the first stored column"
        # full-row template in column order, with the etag annotation first
        self._full_template: dict[str, Any] = {"@odata.etag": None}
        self._full_template.update({c: self.template.get(c) for c in columns})
        self._derived_items = [(c, f) for c, f in self.derived.items()]
        self.rows: dict[str, Row] = {}
        self.order: list[str] = []
        # The change log: versions ascending (8 bytes each, for a million rows), and the key
        # written at each. An entry is stale once its row is written again or removed.
        self._log_versions = array("q")
        self._log_keys: list[str] = []
        self._getters: dict[str, Callable[[Row], Any]] = {}

    # ------------------------------------------------------------------ rows
    def __len__(self) -> int:
        return len(self.rows)

    def load(self, rows: list[Row]) -> None:
        """Replace all rows (used by the generator)."""
        self.rows = {r[0]: r for r in rows}
        self.order = sorted(self.rows, key=guid_sort_key)
        vi = self.version_index
        logged = sorted(self.rows.values(), key=lambda r: r[vi])
        self._log_versions = array("q", [r[vi] for r in logged])
        self._log_keys = [r[0] for r in logged]

    def get(self, guid: str) -> Row | None:
        return self.rows.get(guid.lower())

    def put(self, row: Row) -> None:
        key = row[0]
        if key not in self.rows:
            bisect.insort(self.order, key, key=guid_sort_key)
        self.rows[key] = row
        version, versions = row[self.version_index], self._log_versions
        # Versions only grow (Store.next_version), so this is an append.
        at = (
            len(versions)
            if not versions or versions[-1] <= version
            else bisect.bisect_right(versions, version)
        )
        versions.insert(at, version)
        self._log_keys.insert(at, key)

    def changed(self, after: int, upto: int) -> Iterator[Row]:
        """The rows whose version is in (after, upto], in version order: from the change
        log, so a delta costs what changed, not the table's size."""
        versions, keys, rows, vi = self._log_versions, self._log_keys, self.rows, self.version_index
        for at in range(bisect.bisect_right(versions, after), bisect.bisect_right(versions, upto)):
            row = rows.get(keys[at])
            # Stale: the row was written again later, or removed.
            if row is not None and row[vi] == versions[at]:
                yield row

    def remove(self, guid: str) -> Row | None:
        guid = guid.lower()
        row = self.rows.pop(guid, None)
        if row is not None:
            i = bisect.bisect_left(self.order, guid_sort_key(guid), key=guid_sort_key)
            if i < len(self.order) and self.order[i] == guid:
                del self.order[i]
        return row

    def iter_from(self, after_key: str | None = None) -> Iterator[Row]:
        """Rows in primary-key order, strictly after ``after_key`` (a sort key)."""
        order = self.order
        rows = self.rows
        start = 0 if after_key is None else bisect.bisect_right(order, after_key, key=guid_sort_key)
        n = len(order)
        step = 2048
        while start < n:
            chunk = order[start : start + step]
            start += step
            for key in chunk:
                yield rows[key]

    # ------------------------------------------------------------------ values
    def getter(self, col: str) -> Callable[[Row], Any]:
        g = self._getters.get(col)
        if g is not None:
            return g
        xi = self.extra_index
        if col in self.stored_index:
            i = self.stored_index[col]

            def g(r, i=i):
                return r[i]
        elif col in self.derived:
            f = self.derived[col]

            def g(r, f=f, col=col, xi=xi):
                extra = r[xi]
                if extra is not None and col in extra:
                    return extra[col]
                return f(r)
        else:
            const = self.template.get(col)

            def g(r, const=const, col=col, xi=xi):
                extra = r[xi]
                if extra is not None:
                    return extra.get(col, const)
                return const

        self._getters[col] = g
        return g

    def value(self, row: Row, col: str) -> Any:
        return self.getter(col)(row)

    def etag(self, row: Row) -> str:
        return f'W/"{row[self.version_index]}"'

    def render(self, row: Row) -> dict[str, Any]:
        """The full record as Dataverse returns it (columns in the table's order)."""
        d = self._full_template.copy()
        d["@odata.etag"] = f'W/"{row[self.version_index]}"'
        d.update(zip(self.stored, row, strict=False))
        for col, f in self._derived_items:
            d[col] = f(row)
        extra = row[self.extra_index]
        if extra is not None:
            d.update(extra)
        return d

    def renderer(self, select: list[str] | None) -> Callable[[Row], dict[str, Any]]:
        """A function rendering rows restricted to ``select`` (None = all columns)."""
        if not select:
            return self.render
        # the caller's order, then the primary key when it was not selected (as in the
        # documented responses: "@odata.etag", "fullname", "contactid")
        cols = list(select) if self.primary_key in select else [*select, self.primary_key]
        getters = [(c, self.getter(c)) for c in dict.fromkeys(cols)]
        vi = self.version_index

        def render(r):
            d = {"@odata.etag": f'W/"{r[vi]}"'}
            for c, g in getters:
                d[c] = g(r)
            return d

        return render

    def record_dict(self, row: Row) -> dict[str, Any]:
        """Full record without annotations (for Python callers)."""
        d = self.render(row)
        del d["@odata.etag"]
        return d

    def make_row(self, values: Mapping[str, Any]) -> Row:
        """Build a row tuple from a full mapping of column values."""
        stored = [values.get(c) for c in self.stored]
        extra: dict[str, Any] = {}
        for col in self.columns:
            if col in self.stored_index or col not in values:
                continue
            v = values[col]
            if col in self.derived:
                probe = (*stored, None)
                if self.derived[col](probe) != v:
                    extra[col] = v
            elif self.template.get(col) != v:
                extra[col] = v
        return (*stored, extra or None)
