"""The dead-worker reaper, over every registered kind: no row stays running after its worker died.

A running operation refreshes ``heartbeat_at`` every KARBOR_FLOW_HEARTBEAT_INTERVAL seconds.
A row in its kind's running status whose heartbeat (or, when never set, ``created_at``) is
older than KARBOR_SERVICE_DOWN_TIME is failed with a reason naming the worker, and so are its
open operation logs. A row no worker has claimed yet (``worker`` empty) may just be queued
behind long operations: it is failed only after KARBOR_QUEUED_TIMEOUT (a lost message).

Before failing a row, the kind's ``reconcile`` may find the work in fact complete (a protect
whose worker died between the bank commit and the finish: the manifest is there) and finish
it as a success instead.

Each change is a conditional UPDATE on the status *and the heartbeat value read*, so an
operation that heartbeats in between is left alone. It runs from a system-owned celery-beat
entry (``reaper_schedule_ensure``, installed when beat starts) and once when a worker starts.
"""
from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from operations.kinds import Kind, registered_kinds
from operations.runner import close_log, failed_values

log = logging.getLogger(__name__)

REAPER_PERIODIC_TASK = "karbor-system-reap-dead-flows"
REAP_TASK = "karbor.protection.reap_dead_flows"  # the task name beat stores (kept from protection.tasks)


class ReapReport(dict):
    """Table name (``checkpoints``, ``restores``…) → ids failed or reconciled."""

    def __getattr__(self, name: str) -> list[str]:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.get(name, [])

    def as_dict(self) -> dict[str, list[str]]:
        return dict(self)

    def __bool__(self) -> bool:
        return any(self.values())


def stale_rows(cutoff: dt.datetime, queued_cutoff: dt.datetime) -> Q:
    # A row no worker has claimed yet (no heartbeat, no worker) may simply wait in the queue
    # behind long operations, so it gets KARBOR_QUEUED_TIMEOUT instead of the down time.
    claimed_without_beat = Q(heartbeat_at__isnull=True) & ~Q(worker="")
    return (
        Q(heartbeat_at__lt=cutoff)
        | (claimed_without_beat & Q(created_at__lt=cutoff))
        | Q(heartbeat_at__isnull=True, worker="", created_at__lt=queued_cutoff)
    )


def dead_worker_reason(*, worker: str, heartbeat_at: dt.datetime | None, down_time: int, queued: int = 0) -> str:
    if not worker:
        return (f"No worker picked up this operation within {queued or down_time} s "
                "(is a Celery worker running and reaching the broker?).")
    seen = heartbeat_at.strftime("%Y-%m-%dT%H:%M:%SZ") if heartbeat_at else "never"
    return (f"Worker {worker} stopped heartbeating (last heartbeat {seen}, down time {down_time} s); "
            "it died or lost the database. Start the operation again.")


def reap_dead_flows(*, now: dt.datetime | None = None, down_time: int | None = None) -> ReapReport:
    """Fail (or reconcile) every running row whose worker is gone; return what was changed."""
    now = now or timezone.now()
    down_time = int(down_time if down_time is not None else settings.KARBOR_SERVICE_DOWN_TIME)
    queued = max(down_time, int(settings.KARBOR_QUEUED_TIMEOUT))
    stale = stale_rows(now - dt.timedelta(seconds=down_time), now - dt.timedelta(seconds=queued))
    report = ReapReport()
    for kind in registered_kinds():
        table = kind.model._meta.db_table
        report.setdefault(table, [])
        for row in kind.model.all_objects.filter(status=kind.running).filter(stale):
            if _reap_row(kind, row, now=now, down_time=down_time, queued=queued):
                report[table].append(row.pk)
    return report


def _reap_row(kind: Kind, row, *, now: dt.datetime, down_time: int, queued: int) -> bool:
    reason = dead_worker_reason(worker=row.worker, heartbeat_at=row.heartbeat_at, down_time=down_time, queued=queued)
    finished = kind.reconcile(row) if kind.reconcile is not None else None
    if finished is not None:
        values, status, error = {**finished, "status": kind.success}, kind.success, None
    else:
        values, status, error = failed_values(kind, row, reason), kind.failure, reason
    with transaction.atomic():
        changed = kind.model.all_objects.filter(pk=row.pk, status=kind.running, heartbeat_at=row.heartbeat_at).update(
            **values, updated_at=now
        )
        if changed:
            close_log(kind, row.pk, status=status, reason=error, values=values, now=now)
    if changed:
        verdict = "finished from the bank" if finished is not None else "failed"
        log.warning("%s %s %s by the reaper: %s", kind.name, row.pk, verdict, reason)
    return bool(changed)


def reaper_schedule_ensure(*, interval: int | None = None):
    """Install (or correct) the system-owned beat entry that runs the reaper; touches only that row.

    ``expire_seconds`` equals the interval, so reaper runs missed while no worker was up are
    dropped by the broker instead of piling up.
    """
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every = int(interval or settings.KARBOR_REAPER_INTERVAL)
    schedule, _ = IntervalSchedule.objects.get_or_create(every=every, period=IntervalSchedule.SECONDS)
    task, created = PeriodicTask.objects.get_or_create(
        name=REAPER_PERIODIC_TASK,
        defaults={"task": REAP_TASK, "interval": schedule, "expire_seconds": every, "enabled": True,
                  "description": "System: fail operations whose worker died (operations.reaper)."},
    )
    if not created and (task.task, task.interval_id, task.expire_seconds, task.enabled) != (
        REAP_TASK, schedule.pk, every, True
    ):
        task.task, task.interval, task.expire_seconds, task.enabled = REAP_TASK, schedule, every, True
        task.crontab = task.clocked = task.solar = None
        task.one_off = False
        task.save()
    return task
