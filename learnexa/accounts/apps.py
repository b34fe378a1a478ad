from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "learnexa.accounts"
    label = "accounts"
    verbose_name = "Companies and users"
