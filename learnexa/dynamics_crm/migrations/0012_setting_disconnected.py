from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dynamics_crm", "0011_admin_day"),
    ]

    operations = [
        migrations.AlterField(
            model_name="dynamicscrmsetting",
            name="status",
            field=models.CharField(
                choices=[
                    ("configured", "Configured, not synced yet"),
                    ("ok", "Connected"),
                    ("error", "Last sync failed"),
                    ("disconnected", "Disconnected"),
                ],
                default="configured",
                max_length=16,
            ),
        ),
    ]
