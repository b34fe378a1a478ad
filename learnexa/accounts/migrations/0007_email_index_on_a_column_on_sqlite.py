"""The email's unique index: on SQLite, on the email with the NOCASE collation rather than on
LOWER(email) (see CaseFolded); on PostgreSQL it stays as it is, so it isn't rebuilt."""

from django.db import migrations, models
from django.db.models.functions import Lower

import learnexa.accounts.models

NAME = "users_email_unique_per_company"
ON_LOWER = models.UniqueConstraint(Lower("email"), "company", name=NAME)
ON_NOCASE = models.UniqueConstraint(
    learnexa.accounts.models.CaseFolded("email"), "company", name=NAME
)


def _swap(old, new):
    def swap(apps, schema_editor):
        if schema_editor.connection.vendor == "sqlite":
            user = apps.get_model("accounts", "User")
            schema_editor.remove_constraint(user, old)
            schema_editor.add_constraint(user, new)

    return swap


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0006_fewer_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveConstraint(model_name="user", name=NAME),
                migrations.AddConstraint(model_name="user", constraint=ON_NOCASE),
            ],
            database_operations=[
                migrations.RunPython(_swap(ON_LOWER, ON_NOCASE), _swap(ON_NOCASE, ON_LOWER)),
            ],
        ),
    ]
