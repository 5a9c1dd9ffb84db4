"""celery-beat wiring: one django-celery-beat ``PeriodicTask`` per trigger that has work to do.

``sync_trigger_schedule`` is the single seam the trigger services call after every change of a
trigger or of its scheduled operations. It only writes rows; django-celery-beat's
``DatabaseScheduler`` picks them up and sends ``karbor.triggers.fire`` with
``{"trigger_id": ...}``.

* A trigger gets a beat entry only while it is live, has at least one live enabled scheduled
  operation, and will fire again; otherwise its entry is removed.
* A ``crontab`` trigger whose pattern celery's crontab reads the same way as cron (digits,
  ``*``, ``,``, ``-``, ``/``; not both day-of-month and day-of-week restricted, since cron ORs
  them while celery ANDs them) and that has no ``end_time`` gets a ``CrontabSchedule``.
* Every other trigger (calendar patterns, cron beyond that subset, an ``end_time``) gets a
  one-off ``ClockedSchedule`` at its next fire time, computed by ``timeparse``; whoever handles
  the fire calls ``sync_trigger_schedule`` again to move it to the following fire time.
* ``expire_seconds`` is the trigger's ``window``: a tick that no worker picks up within the
  window is dropped by the broker instead of piling up (django-celery-beat allows only one of
  ``expires`` / ``expire_seconds``).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re

from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, PeriodicTask

from triggers.models import Trigger

log = logging.getLogger(__name__)

FIRE_TASK = "karbor.triggers.fire"
_CELERY_CRON_FIELD = re.compile(r"^[0-9*,/\-]+$")


def periodic_task_name(trigger_id: str) -> str:
    """The beat entry's unique name for a trigger."""
    return f"karbor-trigger-{trigger_id}"


def celery_crontab_fields(pattern: str) -> dict[str, str] | None:
    """The CrontabSchedule fields for a cron pattern celery evaluates like cron, else None."""
    fields = pattern.split()
    if len(fields) != 5 or not all(_CELERY_CRON_FIELD.match(field) for field in fields):
        return None
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    if day_of_month != "*" and day_of_week != "*":
        return None
    if "7" in re.findall(r"\d+", day_of_week):  # cron's second Sunday; celery knows only 0-6
        return None
    return {
        "minute": minute,
        "hour": hour,
        "day_of_month": day_of_month,
        "month_of_year": month_of_year,
        "day_of_week": day_of_week,
    }


@transaction.atomic
def sync_trigger_schedule(trigger_id: str, *, now: dt.datetime | None = None) -> PeriodicTask | None:
    """Make the trigger's beat entry match the trigger and its operations; return it (None when removed)."""
    now = now or timezone.now()
    name = periodic_task_name(trigger_id)
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
    existing = PeriodicTask.objects.select_for_update().filter(name=name).first()
    old_clocked_id = existing.clocked_id if existing else None
    if next_time is None:
        if existing is not None:
            existing.delete()
        _drop_unused_clocked(old_clocked_id)
        return None

    props = trigger.properties
    task = existing or PeriodicTask(name=name)
    task.task = FIRE_TASK
    task.kwargs = json.dumps({"trigger_id": trigger.id})
    task.description = f"Trigger {trigger.name}: {props.get('format')} {props.get('pattern')}"
    task.expire_seconds = int(props.get("window") or 0) or None
    task.expires = None
    task.enabled = True
    task.interval = task.solar = None
    cron = celery_crontab_fields(props["pattern"]) if props.get("format") == "crontab" else None
    if cron is not None and not props.get("end_time"):
        task.crontab, _ = CrontabSchedule.objects.get_or_create(**cron, timezone="UTC")
        task.clocked = None
        task.one_off = False
        task.start_time = trigger.start_time
    else:
        task.clocked, _ = ClockedSchedule.objects.get_or_create(clocked_time=next_time)
        task.crontab = None
        task.one_off = True
        task.start_time = None
    task.save()
    if old_clocked_id != task.clocked_id:
        _drop_unused_clocked(old_clocked_id)
    return task


def _drop_unused_clocked(clocked_id: int | None) -> None:
    if clocked_id is not None and not PeriodicTask.objects.filter(clocked_id=clocked_id).exists():
        ClockedSchedule.objects.filter(pk=clocked_id).delete()
