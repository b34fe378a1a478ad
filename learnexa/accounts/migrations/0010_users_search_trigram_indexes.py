"""Indexes for the Manage site's users search on PostgreSQL.

The search is `icontains` on the email, first and last name, which Django writes on
PostgreSQL as `UPPER("users"."email"::text) LIKE UPPER('%…%')`: pg_trgm GIN indexes on those
very expressions serve it (a bitmap scan of each, ORed), where before every row of the
company was read. On SQLite nothing changes: it has no such index, and a LIKE with a
leading wildcard reads the company's rows as before.
"""

from django.db import migrations

COLUMNS = ("email", "first_name", "last_name")


def index_name(column: str) -> str:
    return f"users_{column}_upper_trgm"


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for column in COLUMNS:
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS "{index_name(column)}" ON "users" '
            f'USING gin ((UPPER("{column}"::text)) gin_trgm_ops)'
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in COLUMNS:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{index_name(column)}"')


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0009_link_requests"),
    ]

    operations = [migrations.RunPython(create, drop)]
