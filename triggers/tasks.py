"""Celery tasks of the operation engine: thin wrappers around ``triggers.engine``, taking ids."""
from __future__ import annotations

from celery import shared_task

from triggers.schedule import FINISH_TASK, FIRE_TASK, RESYNC_TASK


@shared_task(name=FIRE_TASK, acks_late=True, ignore_result=True)
def fire(trigger_id: str, fire_time: str | None = None) -> int:
    """A trigger's tick (sent by beat): run its operations once, re-arm it; return how many runs were logged."""
    from triggers import engine

    return len(engine.trigger_fire(trigger_id=trigger_id, fire_time=fire_time))


@shared_task(bind=True, name=FINISH_TASK, acks_late=True, ignore_result=True, max_retries=None)
def run_finish(self, run_id: int) -> None:
    """Settle a scheduled run once its checkpoint is done (retention, result); re-check later until then."""
    from django.conf import settings

    from triggers import engine

    if not engine.run_finish(run_id=run_id):
        raise self.retry(countdown=settings.KARBOR_ENGINE_POLL_INTERVAL)


@shared_task(name=RESYNC_TASK, acks_late=True, ignore_result=True)
def resync() -> int:
    """Arm triggers that have work but no beat entry; return how many."""
    from triggers.schedule import resync_unarmed_triggers

    return len(resync_unarmed_triggers())
