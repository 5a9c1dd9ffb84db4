"""celery-beat wiring: one django-celery-beat ``PeriodicTask`` per armed fire time of a trigger with work to do.

``sync_trigger_schedule`` is the single seam the trigger services and the engine call after every
change of a trigger or of its scheduled operations, and after every fire. It only writes rows;
django-celery-beat's ``DatabaseScheduler`` picks them up and sends ``karbor.triggers.fire`` with
``{"trigger_id": ..., "fire_time": "YYYY-MM-DD HH:MM:SS"}``.

* A trigger gets a beat entry only while it is live, has at least one live enabled scheduled
  operation, and will fire again; otherwise its entry is removed.
* Every format gets a ``ClockedSchedule`` at its next fire time, computed by ``timeparse`` (the
  one time evaluator: celery's own crontab reads some patterns differently from cron, so it is
  not used). The fire task re-arms the entry to the following fire time (``triggers.engine``).
* Each fire time gets its own one-off entry, named after the trigger and the time
  (``karbor-trigger-<id>@<time>``), and re-arming creates the next one instead of moving the
  clock of the sent one: django-celery-beat disables a sent one-off entry by saving its stale
  in-memory row (and writes its run count back at its next sync), which would overwrite a
  clock the worker moved in the meantime. The sent entry is disabled at once and deleted by a
  later sync, once beat is surely done with it (``BEAT_SETTLE``); a second send of it is
  harmless anyway because each (operation, tick) runs at most once (``engine``).
* No ``expires``: a tick that arrives late must still reach the engine, which logs it as
  skipped (outside the trigger's ``window``) and re-arms the trigger; an expired message
  would be dropped by the worker and the trigger would never be re-armed.
"""
from __future__ import annotations

import datetime as dt
import json
import logging

from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, PeriodicTask

from triggers.models import Trigger
from triggers.timeparse import format_time

log = logging.getLogger(__name__)

FIRE_TASK = "karbor.triggers.fire"
# Longer than celery beat's sync interval (3 minutes): after this a sent entry is no longer dirty in beat.
BEAT_SETTLE = dt.timedelta(minutes=10)


def periodic_task_prefix(trigger_id: str) -> str:
    """The common start of the names of a trigger's beat entries.

    It also matches the single ``karbor-trigger-<id>`` entry written before entries were named
    per fire time, so the first sync of such a trigger replaces it.
    """
    return f"karbor-trigger-{trigger_id}"


def periodic_task_name(trigger_id: str, fire_time: dt.datetime) -> str:
    """The beat entry's unique name for one fire time of a trigger."""
    return f"{periodic_task_prefix(trigger_id)}@{format_time(fire_time)}"


def trigger_beat_entry(trigger_id: str) -> PeriodicTask | None:
    """The trigger's armed entry (the next fire time), if any."""
    return (
        PeriodicTask.objects.filter(name__startswith=periodic_task_prefix(trigger_id), enabled=True)
        .select_related("clocked")
        .order_by("-clocked__clocked_time")
        .first()
    )


@transaction.atomic
def sync_trigger_schedule(trigger_id: str, *, now: dt.datetime | None = None) -> PeriodicTask | None:
    """Arm the trigger's beat entry at its next fire time after ``now`` (or remove it); return it."""
    now = now or timezone.now()
    trigger = Trigger.objects.filter(pk=trigger_id).first()
    active = (
        trigger is not None
        and trigger.scheduled_operations.filter(deleted=False, enabled=True).exists()
    )
    next_time = None
    if active:
        try:
            next_time = trigger.next_fire_time(after=now)
        except ValueError:
            # Only rows written around the services can hold a bad pattern; such a trigger never fires.
            log.warning("trigger %s has an unusable time pattern; removing its beat entry", trigger_id, exc_info=True)
    wanted = periodic_task_name(trigger_id, next_time) if next_time is not None else None
    rows = list(
        # No select_related: PostgreSQL cannot lock the nullable side of the outer join to the clock.
        PeriodicTask.objects.select_for_update()
        .filter(name__startswith=periodic_task_prefix(trigger_id))
    )
    current = None
    for row in rows:
        if row.name == wanted:
            current = row
            continue
        clock = row.clocked.clocked_time if row.clocked else None
        if clock is not None and now - BEAT_SETTLE < clock <= now:
            # Just sent: beat may still write its run count back, so the row stays a while, disabled
            # (a second beat that has not sent it yet will not; the engine ran the tick already).
            if row.enabled:
                PeriodicTask.objects.filter(pk=row.pk).update(enabled=False)
            continue
        row.delete()
        _drop_unused_clocked(row.clocked_id)
    if next_time is None:
        return None
    props = trigger.properties
    description = f"Trigger {trigger.name}: {props.get('format')} {props.get('pattern')}"
    if current is not None and current.enabled and current.description == description:
        return current  # unchanged: saving would only make every beat reload its whole schedule
    task = current or PeriodicTask(name=wanted)
    task.task = FIRE_TASK
    task.kwargs = json.dumps({"trigger_id": trigger.id, "fire_time": format_time(next_time)})
    task.description = description
    task.expire_seconds = None
    task.expires = None
    task.enabled = True
    task.interval = task.solar = task.crontab = None
    if task.clocked_id is None:
        task.clocked = ClockedSchedule.objects.create(clocked_time=next_time)
    task.one_off = True
    task.start_time = None
    task.save()
    return task


def _drop_unused_clocked(clocked_id: int | None) -> None:
    if clocked_id is not None and not PeriodicTask.objects.filter(clocked_id=clocked_id).exists():
        ClockedSchedule.objects.filter(pk=clocked_id).delete()


RESYNC_TASK = "karbor.triggers.resync"
FINISH_TASK = "karbor.triggers.run_finish"
RESYNC_PERIODIC_TASK = "karbor-system-triggers-resync"
RESYNC_INTERVAL_SECONDS = 300


def resync_unarmed_triggers(*, now: dt.datetime | None = None) -> list[str]:
    """Arm every trigger that has work but no armed entry; return their ids.

    Re-arming normally happens when a fire is handled; this sweep covers a fire message that was
    lost (a broker that dropped it, a purge): the trigger resumes at its next fire time, and the
    ticks it missed are not replayed.
    """
    from triggers.models import ScheduledOperation

    now = now or timezone.now()
    trigger_ids = set(
        ScheduledOperation.objects.filter(enabled=True, trigger__deleted=False).values_list("trigger_id", flat=True)
    )
    armed = []
    for trigger_id in sorted(trigger_ids):
        if trigger_beat_entry(trigger_id) is None and sync_trigger_schedule(trigger_id, now=now) is not None:
            log.warning("trigger %s had no armed beat entry; armed it again", trigger_id)
            armed.append(trigger_id)
    return armed


def resync_schedule_ensure() -> PeriodicTask:
    """The system beat entry of the sweep above (idempotent; beat calls it at start-up)."""
    from django_celery_beat.models import IntervalSchedule

    every, _ = IntervalSchedule.objects.get_or_create(every=RESYNC_INTERVAL_SECONDS, period=IntervalSchedule.SECONDS)
    task, _ = PeriodicTask.objects.update_or_create(
        name=RESYNC_PERIODIC_TASK,
        defaults={
            "task": RESYNC_TASK, "interval": every, "expire_seconds": RESYNC_INTERVAL_SECONDS, "enabled": True,
            "one_off": False, "description": "System: re-arm triggers whose fire message was lost (triggers.schedule).",
        },
    )
    return task
