"""Bulk inserts at the database's pace.

Django's bulk_create compiles every value of every row through the query compiler, which
for pages of thousands of rows costs more than the database's own work. Here each column
gets one converter, chosen once per call, and the rows go through multi-row INSERTs on
SQLite, or one COPY on PostgreSQL.
"""

from __future__ import annotations

import functools
import itertools
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence

import orjson
from django.db import connections, models, router

# Values of these fields need converting for the driver; strings, numbers, booleans and
# ids go to it as they are.
CONVERTED = {
    "JSONField",
    "DateTimeField",
    "DateField",
    "TimeField",
    "DecimalField",
    "DurationField",
    "BinaryField",
}


ROWS_PER_STATEMENT = 1024
# Values a column may be bound once for all rows as: what equality tells apart exactly.
_PLAIN = {str, int, bool, type(None), bytes}


def _converter(field: models.Field, connection) -> Callable | None:
    kind = field.get_internal_type()
    if kind == "UUIDField":
        # What UUIDField.get_db_prep_value does, without its per-value dispatch. A native
        # uuid column takes a UUID or its text as it is.
        return None if connection.features.has_native_uuid_field else _uuid_hex
    if kind not in CONVERTED:
        return None
    if kind == "JSONField" and field.encoder is None:
        # orjson writes the same JSON as json.dumps, several times faster.
        return _json_text
    prep = field.get_db_prep_save
    if kind in ("JSONField", "BinaryField"):
        return lambda value: prep(value, connection)
    # Dates and times of a page are mostly the same few values ("now"): converted once each.
    memo: dict = {}

    def convert(value):
        try:
            return memo[value]
        except KeyError:
            memo[value] = converted = prep(value, connection)
            return converted

    return convert


def _json_text(value) -> str:
    return orjson.dumps(value).decode()


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _uuid_hex(value) -> str:
    """A UUID, or its text, as 32 hex digits: how Django stores one without a uuid type."""
    if type(value) is str:
        if _CANONICAL_UUID.fullmatch(value):
            return value.replace("-", "")
        value = uuid.UUID(value)  # any other spelling, or a ValueError
    return value.hex


def _uuid_hex_column(values: Sequence) -> list:
    """_uuid_hex of each value (None stays None). Where every value is canonical text, as
    the sync has them, the column is checked and converted joined, with a few string
    operations in C, instead of a regex and a call per value."""
    texts = [v for v in values if v is not None]
    n = len(texts)
    try:
        text = "".join(texts)
        digits = text.replace("-", "")
        canonical = (
            len(text) == 36 * n
            and all(text[at::36] == "-" * n for at in (8, 13, 18, 23))
            and len(digits) == 32 * n
            and digits == digits.lower()
            and len(bytes.fromhex(digits)) == 16 * n  # a ValueError if one isn't hex
        )
    except (TypeError, ValueError):  # a UUID among them, or text that isn't canonical
        canonical = False
    if not canonical:
        return [None if v is None else _uuid_hex(v) for v in values]
    hexes = [digits[at : at + 32] for at in range(0, 32 * n, 32)]
    if n == len(values):
        return hexes
    found = iter(hexes)
    return [None if v is None else next(found) for v in values]


def insert_rows(model: type[models.Model], fields: Sequence[str], rows: Iterable[Sequence]) -> None:
    """INSERT `rows` (sequences of Python values, in `fields` order) into `model`'s table."""
    Rows(model, fields, rows).insert()


class Rows:
    """Rows of one table, converted for the database driver and ready to insert.

    Converting is Python work and inserting is mostly the database's, so the two can be
    done apart: converted in one thread while another inserts the rows before them. A
    column can be given its values after converting (`set_column`), such as ids reserved
    only when the rows are inserted.
    """

    def __init__(
        self,
        model: type[models.Model],
        fields: Sequence[str],
        rows: Iterable[Sequence],
        *,
        connection=None,
        later: Sequence[str] = (),
    ):
        """`later`: the fields whose values set_column gives after converting."""
        self.model = model
        self.connection = connection or connections[router.db_for_write(model)]
        meta = model._meta
        self.fields = [meta.get_field(name) for name in fields]
        rows = rows if isinstance(rows, list) else list(rows)
        self.count, self.width = len(rows), len(self.fields)
        # The columns with one value for every row (SQLite only), bound once per statement
        # rather than once per row: a page's company, source, times and defaults were 40 %
        # of the values bound, and binding holds the GIL. The others are in `values`.
        self.constants: dict[int, object] = {}
        self.varying = list(range(self.width))
        self.values = []
        if not rows:
            return
        # Column by column: each converter runs over its column in one comprehension, all
        # in C but for the converters themselves; then flattened row by row, as the
        # driver takes them, so that inserting has nothing left to do in Python.
        columns = list(zip(*rows, strict=True))
        for index, field in enumerate(self.fields):
            convert = _converter(field, self.connection)
            if convert is _uuid_hex:
                columns[index] = _uuid_hex_column(columns[index])
            elif convert is not None:
                columns[index] = [None if v is None else convert(v) for v in columns[index]]
        if self.connection.vendor == "sqlite" and self.count > 1:
            self.constants = {
                index: column[0]
                for index, column in enumerate(columns)
                if self.fields[index].name not in later
                and column.count(column[0]) == self.count
                and type(column[0]) in _PLAIN
            }
            if len(self.constants) == self.width:
                self.constants = {}
        self._flatten({i: column for i, column in enumerate(columns) if i not in self.constants})

    def _flatten(self, columns: dict[int, Sequence]) -> None:
        self.varying = sorted(columns)
        self.values = list(
            itertools.chain.from_iterable(zip(*(columns[i] for i in self.varying), strict=True))
        )

    def set_column(self, name: str, values: Sequence) -> None:
        """Values, already as the driver takes them, for the column of field `name`."""
        index = next(i for i, f in enumerate(self.fields) if f.name == name)
        if len(values) != self.count:
            raise ValueError(f"{len(values)} values for {self.count} rows")
        width = len(self.varying)
        if index in self.constants:  # not named in `later`: made a column of its own again
            columns = {i: self.values[at::width] for at, i in enumerate(self.varying)}
            columns[index] = values
            del self.constants[index]
            self._flatten(columns)
            return
        self.values[self.varying.index(index) :: width] = values

    def rows(self) -> Iterator[list]:
        """The rows in full, constants included."""
        varying, width = self.varying, len(self.varying)
        if not self.constants:
            yield from (self.values[at : at + width] for at in range(0, len(self.values), width))
            return
        template = [self.constants.get(i) for i in range(self.width)]
        for at in range(0, len(self.values), width):
            row = template.copy()
            for i, value in zip(varying, self.values[at : at + width], strict=True):
                row[i] = value
            yield row

    def insert(self) -> None:
        if not self.count:
            return
        connection = self.connection
        quote = connection.ops.quote_name
        table = quote(self.model._meta.db_table)
        names = ", ".join(quote(field.column) for field in self.fields)
        values = self.values
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # COPY: one round trip for the page, where executemany makes one a row.
                # psycopg's own errors become Django's, as for any other statement.
                with (
                    connection.wrap_database_errors,
                    cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy,
                ):
                    for row in self.rows():
                        copy.write_row(row)
                return
            # Many rows per statement rather than executemany: SQLite then works through
            # each statement without the GIL, where executemany takes it back after every
            # row, which starves (and is starved by) the threads working on other pages.
            width = len(self.varying)
            row = "({})".format(", ".join(["?"] * width))
            # Within a transaction, a failing row fails the whole page anyway: OR FAIL spares
            # SQLite keeping a copy of every page the statement touches so that it could undo
            # just this statement (its statement journal), a third of a large insert's CPU.
            # In autocommit mode it would keep the rows before the failing one.
            verb = "INSERT OR FAIL" if connection.in_atomic_block else "INSERT"
            constants, source = [], "VALUES {}"
            if self.constants:
                # The constants once, each row's own values from VALUES (column1, …).
                at = {index: n for n, index in enumerate(self.varying, start=1)}
                select = []
                for index in range(self.width):
                    if index in self.constants:
                        select.append("?")
                        constants.append(self.constants[index])
                    else:
                        select.append(f"v.column{at[index]}")
                source = f"SELECT {', '.join(select)} FROM (VALUES {{}}) AS v"
            start = 0
            for size in _statement_sizes(self.count, connection, width, len(constants)):
                _execute_qmark(
                    cursor,
                    f"{verb} INTO {table} ({names}) " + source.format(", ".join([row] * size)),
                    constants + values[start * width : (start + size) * width],
                )
                start += size


def _execute_qmark(cursor, sql: str, params: Sequence) -> None:
    """Execute SQL written with SQLite's own "?" placeholders. Django's SQLite cursor turns
    "%s" into "?" with a regex over the whole statement, which for a multi-row INSERT costs
    more than SQLite's work; the connection's execute wrappers still see the statement."""
    connection = cursor.db

    def execute(sql, params, many, context):
        connection.validate_no_broken_transaction()
        with connection.wrap_database_errors:
            return sqlite3.Cursor.execute(cursor.cursor, sql, params)

    for wrapper in reversed(connection.execute_wrappers):
        execute = functools.partial(wrapper, execute)
    execute(sql, params, False, {"connection": connection, "cursor": cursor})


def _statement_sizes(rows: int, connection, columns: int, once: int = 0) -> list[int]:
    """Rows per INSERT of `columns` values each (and `once` more values per statement): as
    many full statements as fit, then the rest in powers of two, so that the driver's
    statement cache holds a few statements per table, not one per size."""
    fit = (connection.features.max_query_params - once) // columns
    largest = max(1, min(ROWS_PER_STATEMENT, fit))
    sizes = [largest] * (rows // largest)
    rest = rows % largest
    while rest:
        size = 1 << (rest.bit_length() - 1)
        sizes.append(size)
        rest -= size
    return sizes


def allocate_ids(model: type[models.Model], count: int) -> list[int]:
    """Reserve `count` primary keys of `model`, so that rows can be inserted with their ids
    known beforehand instead of read back. Call it inside the transaction that inserts them.
    """
    if count <= 0:
        return []
    connection = connections[router.db_for_write(model)]
    meta = model._meta
    pk = meta.pk.column
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                [connection.ops.quote_name(meta.db_table), pk, count],
            )
            return [row[0] for row in cursor.fetchall()]
        if connection.vendor != "sqlite":
            raise NotImplementedError(f"allocate_ids on {connection.vendor}")
        # The transaction already holds SQLite's write lock (the IMMEDIATE transaction mode
        # in settings), so no other writer can take these ids in between. AUTOINCREMENT
        # tables never reuse an id: the sequence is moved past the reserved ones.
        table = connection.ops.quote_name(meta.db_table)
        cursor.execute(
            f"SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = %s), 0), "
            f"coalesce((SELECT max({connection.ops.quote_name(pk)}) FROM {table}), 0))",
            [meta.db_table],
        )
        last = cursor.fetchone()[0]
        cursor.execute("DELETE FROM sqlite_sequence WHERE name = %s", [meta.db_table])
        cursor.execute(
            "INSERT INTO sqlite_sequence (name, seq) VALUES (%s, %s)",
            [meta.db_table, last + count],
        )
        return list(range(last + 1, last + count + 1))


# -- set-based updates ------------------------------------------------------------------------

# UPDATE … FROM came to SQLite in 3.33.0; older ones update through Django's bulk_update.
SQLITE_UPDATE_FROM = (3, 33, 0)
# Rows per UPDATE where the driver has no limit of its own on parameters (PostgreSQL's
# protocol allows 65,535 per statement with server-side binding).
MAX_UPDATE_PARAMS = 65535


def supports_update_from(connection) -> bool:
    if connection.vendor == "postgresql":
        return True
    if connection.vendor == "sqlite":
        return connection.Database.sqlite_version_info >= SQLITE_UPDATE_FROM
    return False


def _pg_cast(field: models.Field, connection) -> str:
    """The type a VALUES column is cast to on PostgreSQL: the column's own type, text for
    character columns (a cast to varchar(n) would cut a longer value short instead of
    failing as an assignment to the column does)."""
    if field.get_internal_type() in ("CharField", "TextField", "EmailField", "SlugField"):
        return "text"
    return field.db_type(connection)


def update_objects(
    model: type[models.Model],
    groups: dict[Sequence[str], Sequence[models.Model]],
    also: Sequence[str] = (),
    *,
    connection=None,
) -> None:
    """Save, for each group, its fields (and the fields `also`) of its objects, with one
    statement for all the groups: `UPDATE t SET f = v.f, … FROM (VALUES …) AS v WHERE t.pk =
    v.pk`. A field that only some groups change is set from a flag column, to the new value
    where the flag is true and to the column's own value elsewhere, so that a row keeps
    the fields it did not change even if another writer changed them meanwhile.

    Django's bulk_update writes, for every field, a CASE with one WHEN per object, which
    the database evaluates for every row it updates: quadratic in the rows of a batch.
    """
    connection = connection or connections[router.db_for_write(model)]
    groups = {tuple(fields): objs for fields, objs in groups.items() if objs}
    if not groups:
        return
    if not supports_update_from(connection):
        for fields, objs in groups.items():
            model._base_manager.using(connection.alias).bulk_update(
                objs, [*fields, *also], batch_size=500
            )
        return
    meta = model._meta
    names = list(dict.fromkeys([f for fields in groups for f in fields] + list(also)))
    fields = [meta.get_field(name) for name in names]
    flagged = [name for name in names if name not in also and not all(name in g for g in groups)]
    # Columns of v: the primary key, each field's value, then a flag per flagged field.
    width = 1 + len(fields) + len(flagged)
    columns: list[list] = [[] for _ in range(width)]
    for group, objs in groups.items():
        present = set(group)
        for obj in objs:
            columns[0].append(obj.pk)
        for index, field in enumerate(fields, start=1):
            if field.name in present or field.name in also:
                columns[index].extend(getattr(obj, field.attname) for obj in objs)
            else:
                columns[index].extend([None] * len(objs))
        for index, name in enumerate(flagged, start=1 + len(fields)):
            columns[index].extend([name in present] * len(objs))
    for index, field in enumerate([meta.pk, *fields]):
        convert = _converter(field, connection)
        if convert is _uuid_hex:
            columns[index] = _uuid_hex_column(columns[index])
        elif convert is not None:
            columns[index] = [None if v is None else convert(v) for v in columns[index]]
    values = list(itertools.chain.from_iterable(zip(*columns, strict=True)))
    count = len(columns[0])

    limit = connection.features.max_query_params or MAX_UPDATE_PARAMS
    per_statement = max(1, min(limit, MAX_UPDATE_PARAMS) // width)
    with connection.cursor() as cursor:
        for start in range(0, count, per_statement):
            size = min(per_statement, count - start)
            sql = update_from_sql(model, fields, flagged, size, connection)
            params = values[start * width : (start + size) * width]
            if connection.vendor == "sqlite":
                _execute_qmark(cursor, sql, params)
            else:
                cursor.execute(sql, params)


def update_from_sql(model, fields, flagged, rows: int, connection) -> str:
    """The UPDATE … FROM (VALUES …) statement of update_objects, for `rows` rows."""
    quote = connection.ops.quote_name
    meta = model._meta
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    postgres = connection.vendor == "postgresql"
    if postgres:
        # Named columns, each cast to its type: a parameter alone has none, and a column of
        # NULLs would be text.
        casts = [_pg_cast(f, connection) for f in [meta.pk, *fields]] + ["boolean"] * len(flagged)
        row = "({})".format(", ".join(f"%s::{cast}" for cast in casts))
        aliases = [
            "id",
            *(f"f{i}" for i in range(len(fields))),
            *(f"s{i}" for i in range(len(flagged))),
        ]
        column = [f"v.{quote(a)}" for a in aliases]
        source = f"(VALUES {', '.join([row] * rows)}) AS v({', '.join(quote(a) for a in aliases)})"
    else:
        # SQLite names the columns of VALUES column1, column2, …
        row = "({})".format(", ".join(["?"] * (1 + len(fields) + len(flagged))))
        column = [f"v.column{i}" for i in range(1, 2 + len(fields) + len(flagged))]
        source = f"(VALUES {', '.join([row] * rows)}) AS v"
    flag_of = {name: column[1 + len(fields) + i] for i, name in enumerate(flagged)}
    sets = []
    for index, field in enumerate(fields, start=1):
        name = quote(field.column)
        if field.name in flag_of:
            value = f"CASE WHEN {flag_of[field.name]} THEN {column[index]} ELSE u.{name} END"
        else:
            value = column[index]
        sets.append(f"{name} = {value}")
    return f"UPDATE {table} AS u SET {', '.join(sets)} FROM {source} WHERE u.{pk} = {column[0]}"
