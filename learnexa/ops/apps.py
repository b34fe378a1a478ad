from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "learnexa.ops"
    label = "ops"
    verbose_name = "Operations"
