"""The one runner of every long-running row: claim, heartbeat, resources, progress, finish.

``operation_run(kind=…, row_id=…, worker=…)`` is what a kind's Celery task (and the
``protect`` / ``restore`` / ``verify`` commands, in-process) call:

1. **claim** — ``UPDATE … SET worker=<me> WHERE id=… AND status=<running> AND worker=''`` must
   touch one row; otherwise (finished, gone, held by another worker: a re-delivered task)
   the row is returned untouched;
2. the operation log row is opened (``started_at``), a heartbeat thread refreshes
   ``heartbeat_at``, and one ``ProgressRecorder`` adds up progress over the resources;
3. ``kind.prepare`` then ``kind.step`` per resource, each resource ending ``available`` or
   ``error`` with its reason (a ``SoftTimeLimitExceeded`` is never a per-resource error: it
   ends the whole operation with a reason naming the limit);
4. ``kind.commit`` when every resource succeeded; then the **guarded finish** —
   ``UPDATE … WHERE status=<running> AND worker=<me>`` — so a row the reaper already failed
   stays failed (``kind.undo`` then takes back what the commit made visible); any exception
   ends in the guarded **fail**, with the reason on the row and its log.

``operation_enqueue`` is the one enqueue policy (after commit; a broker that refuses the
task fails the row and answers 503), ``operation_fail`` the guarded failure the enqueue
policy, the task's last retry and the services use.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded
from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError as DatabaseInterfaceError
from django.db import OperationalError as DatabaseOperationalError
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from karbor_site.errors import KarborError, ServiceUnavailable
from operations.heartbeat import FlowHeartbeat
from operations.kinds import RESOURCE_AVAILABLE, Kind, Run, add_kind
from operations.models import OperationRow
from operations.progress import ProgressRecorder
from operations.signals import operation_finished
from operations.workers import worker_name
from protection.bank import BankError, Progress
from protection.models import OperationLog
from providers.plugins.base import PluginError

log = logging.getLogger(__name__)

RESOURCE_ERROR = "error"
ANY_RESOURCE = "*"  # resources_reason key of a reason that concerns no single resource
# What a broker that cannot take a message raises (kombu wraps most; sockets raise OSError).
BROKER_ERRORS = (BrokerError, OSError)
# A resource failing with one of these is an ordinary failure (its message is the reason);
# anything else is logged with its traceback and named "unexpected error".
EXPECTED_RESOURCE_ERRORS = (PluginError, KarborError, BankError, OSError)
# Retried by a kind's task: the database or the broker blinking (the guarded claim makes a
# retry safe). A blip in the middle of a run fails the row instead; when even that write
# fails, the exception escapes, and the reaper fails the row once its heartbeat is stale.
TRANSIENT_ERRORS = (DatabaseOperationalError, DatabaseInterfaceError, BrokerError)


class OperationFailed(Exception):
    """Raised by a kind's hook to end the operation with exactly this reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# --- rows and logs -------------------------------------------------------------------------
def operation_claim(*, kind: Kind, row_id: str, worker: str) -> OperationRow | None:
    """Take a ``running`` row nobody runs yet; None when it is finished, gone or another worker's."""
    now = timezone.now()
    values: dict[str, Any] = {"worker": worker, "heartbeat_at": now, "updated_at": now}
    if kind.model.all_objects.filter(pk=row_id, status=kind.running, worker="").update(**values) != 1:
        return None
    return kind.model.all_objects.get(pk=row_id)


def log_filter(kind: Kind, row_id: str) -> dict[str, Any]:
    """The lookup of a row's operation log(s)."""
    return {kind.log_key: row_id, "operation_type": kind.operation_type}


def _log_create(kind: Kind, row: Any, **values: Any) -> OperationLog:
    defaults = {
        "project_id": row.project_id, "operation_type": kind.operation_type, "status": kind.running,
        "provider_id": row.provider_id, "checkpoint_id": getattr(row, "checkpoint_id", None),
        "plan_id": getattr(row, "plan_id", None), kind.log_key: row.pk,
    }
    return OperationLog.objects.create(**{**defaults, **values})


def operation_create(
    *, kind: Kind, enqueue: bool = True, log_values: dict[str, Any] | None = None, **values: Any
) -> OperationRow:
    """Create a running row of ``kind`` and its operation log; its task is sent after commit.

    Call it inside the transaction that validated the request (and took its locks), so the
    row, its log and the locks commit together, and a worker never sees a row half made.
    """
    row = kind.model.objects.create(status=kind.running, **values)
    _log_create(kind, row, **(log_values or {}))
    if enqueue:
        operation_enqueue_on_commit(kind=kind, row_id=row.pk)
    return row


def _open_log(kind: Kind, row: Any) -> OperationLog:
    """The operation log the request created (a missing one is created now); ``started_at`` set."""
    entry = (
        OperationLog.all_objects.filter(**log_filter(kind, row.pk), ended_at__isnull=True).order_by("-created_at").first()
    )
    now = timezone.now()
    if entry is None:
        entry = _log_create(kind, row, started_at=now)
    elif entry.started_at is None:
        OperationLog.all_objects.filter(pk=entry.pk).update(started_at=now)
    return entry


def failed_values(kind: Kind, row: Any, reason: str) -> dict[str, Any]:
    """The row's values once failed: unfinished resources ``error`` with the reason, the reason kept."""
    statuses = dict(getattr(row, "resources_status", None) or {})
    reasons = dict(getattr(row, "resources_reason", None) or {})
    unfinished = [key for key, value in statuses.items() if value == kind.resource_running]
    for key in unfinished:
        statuses[key] = RESOURCE_ERROR
        reasons.setdefault(key, reason)
    values: dict[str, Any] = {"status": kind.failure, "resources_status": statuses, "resources_reason": reasons}
    if kind.has_status_reason:
        values["status_reason"] = reason
    elif not unfinished:
        reasons.setdefault(ANY_RESOURCE, reason)
    return values


def close_log(kind: Kind, row_id: str, *, status: str, reason: str | None, values: dict[str, Any],
               details: dict[str, Any] | None = None, now=None) -> None:
    now = now or timezone.now()
    log_values: dict[str, Any] = {"status": status, "ended_at": now, "error_info": reason or None}
    log_values.update({name: values[name] for name in ("bytes_done", "bytes_total", "items_done", "items_total")
                       if name in values})
    entries = OperationLog.all_objects.filter(**log_filter(kind, row_id), ended_at__isnull=True)
    if kind.log_details and details:
        for entry in entries:
            OperationLog.all_objects.filter(pk=entry.pk).update(
                **log_values, extra_info={**(entry.extra_info or {}), "resources": details}
            )
    else:
        entries.update(**log_values)


def operation_finish(run: Run, *, status: str, reason: str = "", values: dict[str, Any] | None = None) -> bool:
    """Guarded final update of the row (status AND worker) and its log; False when no longer ours."""
    kind, now = run.kind, timezone.now()
    row_values: dict[str, Any] = {"status": status, "heartbeat_at": now, "updated_at": now,
                                  "resources_status": dict(run.statuses), "resources_reason": dict(run.reasons)}
    if kind.has_status_reason:
        row_values["status_reason"] = reason
    row_values.update(values or {})
    with transaction.atomic():
        if kind.model.all_objects.filter(pk=run.row.pk, status=kind.running, worker=run.worker).update(**row_values) != 1:
            log.warning("%s %s was finished by someone else (the reaper?) while %s ran it",
                        kind.name, run.row.pk, run.worker)
            return False
        close_log(kind, run.row.pk, status=status, reason=reason, values=row_values, details=run.details, now=now)
    return True


def operation_fail(*, kind: Kind, row_id: str, reason: str, worker: str | None = None) -> bool:
    """Fail a running row with ``reason`` — guarded by status, and by ``worker`` when given
    (``""``: only a row no worker claimed yet, as when its task could not be queued)."""
    with transaction.atomic():
        rows = kind.model.all_objects.select_for_update().filter(pk=row_id, status=kind.running)
        if worker is not None:
            rows = rows.filter(worker=worker)
        row = rows.first()
        if row is None:
            return False
        now = timezone.now()
        values = {**failed_values(kind, row, reason), "updated_at": now}
        kind.model.all_objects.filter(pk=row_id).update(**values)
        close_log(kind, row_id, status=kind.failure, reason=reason, values=values, now=now)
    return True


def _fail_run(run: Run, reason: str) -> None:
    current = run.kind.model.all_objects.filter(pk=run.row.pk).first()
    values = failed_values(run.kind, current or run.row, reason)
    run.statuses, run.reasons = values.pop("resources_status"), values.pop("resources_reason")
    operation_finish(run, status=run.kind.failure, reason=reason, values=values)


# --- the run -------------------------------------------------------------------------------
def soft_time_limit_reason(kind: Kind) -> str:
    limit = getattr(settings, "CELERY_TASK_SOFT_TIME_LIMIT", None)
    return (f"{kind.label} stopped: it ran longer than the task time limit "
            f"(KARBOR_TASK_SOFT_TIME_LIMIT = {limit} s); raise the limit or split the plan.")


def operation_run(
    *, kind: Kind, row_id: str, worker: str | None = None, echo: Callable[[Progress], None] | None = None
) -> OperationRow | None:
    """Run one operation to its end; idempotent (a finished or foreign-held row is returned untouched)."""
    worker = worker or worker_name()
    row = operation_claim(kind=kind, row_id=row_id, worker=worker)
    if row is None:
        log.info("%s %s is finished, gone or held by another worker; nothing to do", kind.name, row_id)
        return kind.model.all_objects.filter(pk=row_id).first()
    entry = _open_log(kind, row)
    progress = ProgressRecorder(
        log_id=entry.pk, row_model=kind.model if kind.has_progress_columns else None, row_id=row.pk,
        worker=worker, echo=echo,
    )
    run = Run(kind=kind, row=row, worker=worker, log=entry, progress=progress)
    try:
        with FlowHeartbeat(model=kind.model, pk=row.pk, status=kind.running, worker=worker):
            _run(run)
    except OperationFailed as exc:
        _fail_run(run, exc.reason)
    except SoftTimeLimitExceeded:
        log.error("%s %s hit the soft time limit", kind.name, row.pk)
        _fail_run(run, soft_time_limit_reason(kind))
    except Exception as exc:  # noqa: BLE001 - whatever broke, the row must not stay running
        log.exception("%s %s failed", kind.name, row.pk)
        _fail_run(run, f"{kind.label} failed: {type(exc).__name__}: {exc}")
    finally:
        if kind.cleanup is not None:
            kind.cleanup(run)
    operation_finished.send(sender=kind.model, kind=kind, row_id=row.pk)
    return kind.model.all_objects.get(pk=row.pk)


def _run(run: Run) -> None:
    kind = run.kind
    items = list(kind.prepare(run))
    run.statuses = {key: kind.resource_running for key, _ in items}
    run.save_resources()
    for key, item in items:
        try:
            run.details[key] = kind.step(run, item) or {}
            run.statuses[key] = RESOURCE_AVAILABLE
        except SoftTimeLimitExceeded:
            raise  # the whole operation is out of time, not this resource
        except kind.resource_errors as exc:
            message = str(getattr(exc, "message", None) or exc) or type(exc).__name__
            if not isinstance(exc, EXPECTED_RESOURCE_ERRORS):
                log.exception("%s %s: %s failed unexpectedly", kind.name, run.row.pk, key)
                message = f"unexpected error: {type(exc).__name__}: {message}"
            run.statuses[key], run.reasons[key] = RESOURCE_ERROR, message
            log.warning("%s %s: %s failed: %s", kind.name, run.row.pk, key, message)
        run.progress.resource_done()
        run.save_resources()
    if run.failed:
        failed = "; ".join(f"{key}: {run.reasons.get(key, 'failed')}" for key in run.failed)
        reason = f"{len(run.failed)} of {len(items)} resource(s) failed: {failed}"
        operation_finish(run, status=kind.failure, reason=reason)
        return
    values = kind.commit(run) if kind.commit is not None else None
    if not operation_finish(run, status=kind.success, values=values) and kind.commit is not None and kind.undo:
        kind.undo(run)


# --- enqueue -------------------------------------------------------------------------------
def operation_enqueue(*, kind: Kind, row_id: str) -> None:
    """Send the kind's task; a broker that refuses it fails the unclaimed row and is a 503."""
    try:
        kind.task.delay(row_id)
    except BROKER_ERRORS as exc:
        log.error("cannot queue %s %s: %s", kind.name, row_id, exc)
        operation_fail(kind=kind, row_id=row_id, worker="",
                       reason=f"The task could not be queued: {exc}")
        raise ServiceUnavailable(
            f"The task queue is unavailable; the {kind.label.lower()} was not started."
        ) from exc


def operation_enqueue_on_commit(*, kind: Kind, row_id: str) -> None:
    """The one enqueue policy: the task is sent once the row is committed (a worker must see it)."""
    transaction.on_commit(lambda: operation_enqueue(kind=kind, row_id=row_id))


# --- registration and tasks ---------------------------------------------------------------
class OperationTask(Task):
    """A kind's task. Fails the row when a transient error outlived every retry."""

    kind: Kind

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        row_id = args[0] if args else kwargs.get("row_id")
        reason = f"{self.kind.label} failed after {self.request.retries} retries: {type(exc).__name__}: {exc}"
        if not operation_fail(kind=self.kind, row_id=row_id, reason=reason, worker=worker_name(self)):
            operation_fail(kind=self.kind, row_id=row_id, reason=reason, worker="")


def register(kind: Kind) -> Kind:
    """Register a kind with the runner (and the reaper) and build its Celery task; returns the kind.

    The task, named ``kind.task_name``, takes the row id only and runs ``operation_run``;
    transient errors are retried with backoff and jitter — safe, because the claim is guarded.
    """

    def run(self: OperationTask, row_id: str) -> str | None:
        row = operation_run(kind=self.kind, row_id=row_id, worker=worker_name(self))
        return row.status if row is not None else None

    run.__name__ = run.__qualname__ = kind.name
    run.__doc__ = f"Run one {kind.name} operation (``operations.runner.operation_run``)."
    add_kind(kind)
    kind.task = shared_task(
        bind=True, name=kind.task_name, base=OperationTask, kind=kind, acks_late=True, ignore_result=True,
        autoretry_for=TRANSIENT_ERRORS, retry_backoff=True, retry_backoff_max=300, retry_jitter=True, max_retries=5,
    )(run)
    return kind
