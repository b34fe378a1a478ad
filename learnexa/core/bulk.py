"""Bulk inserts at the database's pace.

Django's bulk_create compiles every value of every row through the query compiler, which
for pages of thousands of rows costs more than the database's own work. Here each value
goes through its field's get_db_prep_save only, and the rows through one executemany (one
prepared statement) on SQLite, or one COPY on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import connection, models

CONVERTED = {
    "UUIDField",
    "JSONField",
    "DateTimeField",
    "DateField",
    "TimeField",
    "DecimalField",
    "DurationField",
    "BinaryField",
}


def insert_rows(model: type[models.Model], fields: Sequence[str], rows: Iterable[Sequence]) -> None:
    """INSERT `rows` (tuples of Python values, in `fields` order) into `model`'s table."""
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    sql = "INSERT INTO {} ({}) VALUES ({})".format(
        quote(meta.db_table),
        ", ".join(quote(field.column) for field in columns),
        ", ".join(["%s"] * len(columns)),
    )
    # Strings, numbers, booleans and ids go to the driver as they are; the rest (UUIDs,
    # JSON, dates) through their field's conversion for this database.
    prep = [
        field.get_db_prep_save if field.get_internal_type() in CONVERTED else None
        for field in columns
    ]
    params = [
        tuple(
            p(value, connection) if p is not None and value is not None else value
            for p, value in zip(prep, row, strict=True)
        )
        for row in rows
    ]
    if not params:
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # COPY: one round trip for the page, where executemany makes one a row.
            copy_sql = "COPY {} ({}) FROM STDIN".format(
                quote(meta.db_table), ", ".join(quote(field.column) for field in columns)
            )
            with cursor.cursor.copy(copy_sql) as copy:
                for row in params:
                    copy.write_row(row)
        else:
            cursor.executemany(sql, params)
