from django.apps import AppConfig


class RestoresConfig(AppConfig):
    name = "restores"
    verbose_name = "Restores"

    def ready(self) -> None:
        # Register the restore kind with the runner (and its task) in every process.
        from restores import flows  # noqa: F401
