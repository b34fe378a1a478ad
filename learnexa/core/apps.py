from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "learnexa.core"
    label = "core"
    verbose_name = "Platform processes"
