"""A change record's fields as JSON text, which the database neither parses nor checks (see
JSONTextField). PostgreSQL turns jsonb into text by itself; back, it must be told how."""

from django.db import migrations, models

import learnexa.dynamics_crm.models

AS_JSONB = models.JSONField(blank=True, default=dict)
AS_TEXT = learnexa.dynamics_crm.models.JSONTextField(blank=True, default=dict)


def _alter(old, new):
    def alter(apps, schema_editor):
        change = apps.get_model("dynamics_crm", "SyncChange")
        if schema_editor.connection.vendor == "postgresql" and new is AS_JSONB:
            schema_editor.execute(
                'ALTER TABLE "dynamics_crm_syncchange" '
                'ALTER COLUMN "fields" TYPE jsonb USING "fields"::jsonb'
            )
            return
        fields = [old.clone(), new.clone()]  # bound to the model here, not in the state
        for field in fields:
            field.set_attributes_from_name("fields")
            field.model = change
        schema_editor.alter_field(change, *fields)

    return alter


class Migration(migrations.Migration):
    dependencies = [
        ("dynamics_crm", "0006_log_without_database_constraints"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(model_name="syncchange", name="fields", field=AS_TEXT),
            ],
            database_operations=[
                migrations.RunPython(_alter(AS_JSONB, AS_TEXT), _alter(AS_TEXT, AS_JSONB)),
            ],
        ),
    ]
