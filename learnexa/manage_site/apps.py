from django.apps import AppConfig


class ManageSiteConfig(AppConfig):
    name = "learnexa.manage_site"
    label = "manage_site"
    verbose_name = "Manage site"
