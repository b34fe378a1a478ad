from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dynamics_crm", "0002_credentials"),
    ]

    operations = [
        migrations.AddField(
            model_name="dynamicscrmsetting",
            name="scope_business_units",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="dynamicscrmsetting",
            name="scope_conditions",
            field=models.JSONField(blank=True, default=list),
        ),
    ]
