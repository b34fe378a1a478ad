"""Room on each of the users table's pages for PostgreSQL's HOT updates.

A sync's updates change columns no index covers (a job title, a city), but a row written by
a bulk insert sits on a full page, so PostgreSQL writes its new version elsewhere and adds it
to every index of the table (eleven, three of them trigram GIN indexes). With a tenth of
each page left free, the new version stays on its page and no index is touched. On SQLite
nothing changes. Pages already written keep their fill until they are rewritten.
"""

from django.db import migrations

FILLFACTOR = 90


def set_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f'ALTER TABLE "users" SET (fillfactor = {FILLFACTOR})')


def reset_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute('ALTER TABLE "users" RESET (fillfactor)')


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0011_site_admins_index"),
    ]

    operations = [migrations.RunPython(set_fillfactor, reset_fillfactor)]
