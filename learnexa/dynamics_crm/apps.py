from django.apps import AppConfig


class DynamicsCrmConfig(AppConfig):
    name = "learnexa.dynamics_crm"
    label = "dynamics_crm"
    verbose_name = "Dynamics 365 integration"

    def ready(self):
        from learnexa.accounts import sign_in

        from . import learner_sign_in, panels

        panels.register()
        sign_in.methods.append(learner_sign_in.method)
        sign_in.redirect_origins.append(learner_sign_in.redirect_origins)
