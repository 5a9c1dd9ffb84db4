from django.apps import AppConfig


class ProtectionConfig(AppConfig):
    name = "protection"
    verbose_name = "Protection (checkpoints, bank, workers)"

    def ready(self) -> None:
        # Register the checkpoint and verify kinds with the runner (and their tasks) in every process.
        from protection import copies, flows  # noqa: F401
        from protection.verifications import flows as verification_flows  # noqa: F401
