"""The dead-worker reaper: no operation stays in a running state after its worker died.

A running flow refreshes ``heartbeat_at`` every KARBOR_FLOW_HEARTBEAT_INTERVAL seconds. A row
in a running state whose heartbeat (or, when never set, ``created_at``) is older than
KARBOR_SERVICE_DOWN_TIME is failed with a reason naming the worker, and so are its open
operation logs. A row no worker has claimed yet (``worker`` empty) may just be queued behind
long operations: it is failed only after KARBOR_QUEUED_TIMEOUT (a lost message).

* checkpoints ``protecting`` / ``deleting`` → ``error``;
* restores (``restores.Restore``) and verifications (``protection.Verification``) ``in_progress`` → ``fail``.

Each change is a conditional UPDATE on the status *and the heartbeat value read*, so a flow
that heartbeats in between is left alone. It runs from a system-owned celery-beat entry
(``reaper_schedule_ensure``, installed when beat starts) and once when a worker starts.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from protection.flows import unfinished_resources_failed
from protection.models import Checkpoint, CheckpointStatus, OperationLog, Verification

log = logging.getLogger(__name__)

REAPER_PERIODIC_TASK = "karbor-system-reap-dead-flows"
IN_PROGRESS = "in_progress"
FAIL = "fail"


@dataclass
class ReapReport:
    checkpoints: list[str] = field(default_factory=list)
    restores: list[str] = field(default_factory=list)
    verifications: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {"checkpoints": self.checkpoints, "restores": self.restores, "verifications": self.verifications}

    def __bool__(self) -> bool:
        return bool(self.checkpoints or self.restores or self.verifications)


def _stale(cutoff: dt.datetime, queued_cutoff: dt.datetime) -> Q:
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
    """Fail every running row whose worker is gone; return what was failed."""
    now = now or timezone.now()
    down_time = int(down_time if down_time is not None else settings.KARBOR_SERVICE_DOWN_TIME)
    cutoff = now - dt.timedelta(seconds=down_time)
    queued = max(down_time, int(settings.KARBOR_QUEUED_TIMEOUT))
    stale = _stale(cutoff, now - dt.timedelta(seconds=queued))
    report = ReapReport()

    running = (CheckpointStatus.PROTECTING, CheckpointStatus.DELETING)
    for row in Checkpoint.all_objects.filter(status__in=running).filter(stale):
        reason = dead_worker_reason(worker=row.worker, heartbeat_at=row.heartbeat_at, down_time=down_time, queued=queued)
        statuses, reasons = unfinished_resources_failed(
            {"resources_status": row.resources_status, "resources_reason": row.resources_reason}, reason
        )
        changed = Checkpoint.all_objects.filter(pk=row.pk, status=row.status, heartbeat_at=row.heartbeat_at).update(
            status=CheckpointStatus.ERROR, status_reason=reason, resources_status=statuses,
            resources_reason=reasons, updated_at=now,
        )
        if changed:
            OperationLog.all_objects.filter(
                checkpoint_id=row.pk, operation_type__in=("protect", "delete", "copy"), ended_at__isnull=True
            ).update(status=CheckpointStatus.ERROR, error_info=reason, ended_at=now)
            report.checkpoints.append(row.pk)
            log.warning("checkpoint %s (%s) failed by the reaper: %s", row.pk, row.status, reason)

    from restores.models import Restore

    for row in Restore.all_objects.filter(status=IN_PROGRESS).filter(stale):
        reason = dead_worker_reason(worker=row.worker, heartbeat_at=row.heartbeat_at, down_time=down_time, queued=queued)
        status, reasons = _failed_resources(row.resources_status, row.resources_reason, reason)
        changed = Restore.all_objects.filter(pk=row.pk, status=IN_PROGRESS, heartbeat_at=row.heartbeat_at).update(
            status=FAIL, resources_status=status, resources_reason=reasons, updated_at=now
        )
        if changed:
            OperationLog.all_objects.filter(restore_id=row.pk, ended_at__isnull=True).update(
                status=FAIL, error_info=reason, ended_at=now
            )
            report.restores.append(row.pk)
            log.warning("restore %s failed by the reaper: %s", row.pk, reason)

    for row in Verification.all_objects.filter(status=IN_PROGRESS).filter(stale):
        reason = dead_worker_reason(worker=row.worker, heartbeat_at=row.heartbeat_at, down_time=down_time, queued=queued)
        status, reasons = _failed_resources(row.resources_status, row.resources_reason, reason)
        changed = Verification.all_objects.filter(
            pk=row.pk, status=IN_PROGRESS, heartbeat_at=row.heartbeat_at
        ).update(status=FAIL, resources_status=status, resources_reason=reasons, updated_at=now)
        if changed:
            # A verify log names its verification in extra_info (``{"verification_id": …}``).
            OperationLog.all_objects.filter(
                operation_type="verify", ended_at__isnull=True, extra_info__contains=row.pk  # prepared as JSON: the quoted id
            ).update(status=FAIL, error_info=reason, ended_at=now)
            report.verifications.append(row.pk)
            log.warning("verification %s failed by the reaper: %s", row.pk, reason)
    return report


def _failed_resources(status: dict | None, reasons: dict | None, reason: str) -> tuple[dict, dict]:
    """Resources still running get ``error`` and the reason; with none recorded the reason is kept under ``"*"``."""
    status, reasons = dict(status or {}), dict(reasons or {})
    unfinished = [key for key, value in status.items() if value not in ("available", "error", "success", "fail")]
    for key in unfinished:
        status[key] = "error"
        reasons[key] = reason
    if not unfinished:
        reasons.setdefault("*", reason)
    return status, reasons


def reaper_schedule_ensure(*, interval: int | None = None):
    """Install (or correct) the system-owned beat entry that runs the reaper; touches only that row.

    ``expire_seconds`` equals the interval, so reaper runs missed while no worker was up are
    dropped by the broker instead of piling up.
    """
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from protection.tasks import REAP_TASK

    every = int(interval or settings.KARBOR_REAPER_INTERVAL)
    schedule, _ = IntervalSchedule.objects.get_or_create(every=every, period=IntervalSchedule.SECONDS)
    task, created = PeriodicTask.objects.get_or_create(
        name=REAPER_PERIODIC_TASK,
        defaults={"task": REAP_TASK, "interval": schedule, "expire_seconds": every, "enabled": True,
                  "description": "System: fail operations whose worker died (protection.reaper)."},
    )
    if not created and (task.task, task.interval_id, task.expire_seconds, task.enabled) != (
        REAP_TASK, schedule.pk, every, True
    ):
        task.task, task.interval, task.expire_seconds, task.enabled = REAP_TASK, schedule, every, True
        task.crontab = task.clocked = task.solar = None
        task.one_off = False
        task.save()
    return task
