import logging

from django.apps import AppConfig

log = logging.getLogger(__name__)


class TriggersConfig(AppConfig):
    name = "triggers"
    verbose_name = "Triggers and scheduled operations"

    def ready(self) -> None:
        from operations.signals import operation_finished

        operation_finished.connect(_protect_finished, dispatch_uid="triggers.protect_finished")


def _protect_finished(sender, *, kind, row_id: str, **kwargs) -> None:
    """A scheduled protect settles (and applies its retention) as soon as its checkpoint ends."""
    if kind.name != "checkpoint_protect":
        return
    from triggers.engine import checkpoint_settled

    try:
        checkpoint_settled(checkpoint_id=row_id)
    except Exception:  # noqa: BLE001 - the engine's poll settles it later; the protect itself is done
        log.warning("scheduled run of checkpoint %s not settled yet", row_id, exc_info=True)
