from django.apps import AppConfig


class DynamicsCrmConfig(AppConfig):
    name = "learnexa.dynamics_crm"
    label = "dynamics_crm"
    verbose_name = "Dynamics 365 integration"

    def ready(self):
        from . import panels

        panels.register()
