from django.apps import AppConfig


class RestoresConfig(AppConfig):
    name = "restores"
    verbose_name = "Restores"
