from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "learnexa.demo"
    label = "demo"
