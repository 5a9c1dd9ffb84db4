"""The operation engine: what happens when a trigger fires.

Beat sends ``karbor.triggers.fire`` with the trigger's id and the tick it was armed for
(``triggers.schedule``); the task calls ``trigger_fire``, which

1. runs every live enabled scheduled operation of the trigger for that tick
   (``operation_run``): a row in ``scheduled_operation_logs`` is inserted first, and the
   unique (operation, expect_start_time) key makes a second insert fail, so however many beat
   processes sent the tick and however many workers received it, it runs once;
2. re-arms the trigger's beat entry to its next fire time after the tick (or after now, when
   the tick came late), or removes it once the trigger is past its ``end_time``.

A run is skipped, and logged ``skipped`` with the reason, when it cannot start within the
trigger's ``window`` after the tick (never run late), when the plan is ``suspended``, or when
every running operation engine (``karbor-operationengine`` in ``os-services``) is disabled.
Otherwise it creates the checkpoint through ``protection.services.checkpoint_create`` (as the
API does, with ``created_by`` = the engine and the ``scheduled_operation_id``), and the
follow-up task ``karbor.triggers.run_finish`` polls the checkpoint: when it is ``available``,
a ``retention_protect`` operation deletes what its retention policy does not keep
(``retention_victims``, through ``checkpoint_delete``) and the log becomes ``success``; an
``error`` checkpoint makes it ``failed``.

Retention (``operation_definition`` keys, integers >= 1, each optional):

* ``max_backups``: keep the newest N available checkpoints of the plan;
* ``retention_duration``: keep those at most N days old (both given: a checkpoint must pass both);
* ``keep_daily`` / ``keep_weekly`` / ``keep_monthly`` / ``keep_yearly``: additionally keep the
  newest checkpoint of each of the N most recent days / ISO weeks / months / years that have
  one (grandfather-father-son). With only these keys, nothing else is kept.

The checkpoint just made is always kept; the others are deleted oldest first.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from karbor_site.errors import Conflict, KarborError
from plans.models import Plan, PlanStatus
from protection.models import Checkpoint, CheckpointStatus, Service
from protection.registry import OPERATION_ENGINE_BINARY, service_is_up
from triggers.models import (
    OperationState,
    OperationType,
    RunState,
    ScheduledOperation,
    ScheduledOperationLog,
    ScheduledOperationState,
    Trigger,
)
from triggers.schedule import FINISH_TASK, sync_trigger_schedule
from triggers.timeparse import parse_time

log = logging.getLogger(__name__)

SKIP_WINDOW = "dropped_out_of_window"
SKIP_SUSPENDED = "plan_suspended"
SKIP_ENGINE_DISABLED = "operation_engine_disabled"
_FAILED_CHECKPOINT = (
    CheckpointStatus.ERROR, CheckpointStatus.DELETING, CheckpointStatus.DELETED, CheckpointStatus.ERROR_DELETING,
)


# --- firing --------------------------------------------------------------------------------


def trigger_fire(
    *, trigger_id: str, fire_time: dt.datetime | str | None, now: dt.datetime | None = None
) -> list[ScheduledOperationLog]:
    """Run the trigger's operations for the tick ``fire_time`` and re-arm its beat entry.

    Returns the log rows this call wrote (a tick already handled elsewhere writes none).
    ``fire_time`` None (an entry armed before ticks were named) means the latest fire time
    within the window before ``now``, if any.
    """
    now = now or timezone.now()
    trigger = Trigger.objects.filter(pk=trigger_id).first()
    if trigger is None:
        sync_trigger_schedule(trigger_id, now=now)  # removes the entry of a deleted trigger
        return []
    tick = _tick(trigger, fire_time, now)
    written: list[ScheduledOperationLog] = []
    try:
        if tick is not None:
            operations = trigger.scheduled_operations.filter(deleted=False, enabled=True).order_by("created_at", "id")
            for operation in operations:
                try:
                    run = operation_run(operation=operation, expect_start_time=tick, now=now)
                except Exception as exc:  # noqa: BLE001 - one broken operation must not stop the others
                    log.exception("operation %s: tick %s failed", operation.id, tick)
                    run = _record_failure(operation, tick, now, f"{type(exc).__name__}: {exc}")
                if run is not None:
                    written.append(run)
    finally:
        # Whatever happened to the runs, the trigger must fire again.
        sync_trigger_schedule(trigger_id, now=max(now, tick) if tick else now)
    return written


def _record_failure(
    operation: ScheduledOperation, tick: dt.datetime, now: dt.datetime, reason: str
) -> ScheduledOperationLog | None:
    """Log a run that broke before its row was committed (insert-or-skip, like a run)."""
    try:
        with transaction.atomic():
            run = ScheduledOperationLog.objects.create(
                operation=operation, expect_start_time=tick, triggered_time=now, state=RunState.IN_PROGRESS,
            )
            return _finish(run, RunState.FAILED, now, reason=reason)
    except IntegrityError:
        return None


def _tick(trigger: Trigger, fire_time: dt.datetime | str | None, now: dt.datetime) -> dt.datetime | None:
    if isinstance(fire_time, str):
        return parse_time(fire_time)
    if fire_time is not None:
        return fire_time
    due = None
    for time in trigger.fire_times(after=now - dt.timedelta(seconds=trigger.window)):
        if time > now:
            break
        due = time
    return due


def operation_run(
    *,
    operation: ScheduledOperation,
    expect_start_time: dt.datetime,
    now: dt.datetime | None = None,
    manual: bool = False,
) -> ScheduledOperationLog | None:
    """Run one scheduled operation for one tick, at most once; None when the tick was already taken.

    ``manual`` (the admin's "run now") skips the window and engine checks: an operator asked.
    """
    now = now or timezone.now()
    with transaction.atomic():
        try:
            with transaction.atomic():
                run = ScheduledOperationLog.objects.create(
                    operation=operation,
                    expect_start_time=expect_start_time,
                    triggered_time=now,
                    state=RunState.IN_PROGRESS,
                    extend_info={"manual": True} if manual else {},
                )
        except IntegrityError:
            log.info("operation %s: tick %s already handled", operation.id, expect_start_time)
            return None
        reason = None if manual else _skip_reason(operation, expect_start_time, now)
        if reason is not None:
            code, message = reason
            log.warning("operation %s: tick %s skipped: %s", operation.id, expect_start_time, message)
            return _finish(run, RunState.SKIPPED, now, reason=message, code=code)
        definition = operation.operation_definition or {}
        from protection.services import CREATED_BY_ENGINE, checkpoint_create

        try:
            checkpoint = checkpoint_create(
                project_id=operation.project_id,
                provider_id=definition.get("provider_id", ""),
                plan_id=definition.get("plan_id", ""),
                created_by=CREATED_BY_ENGINE,
                scheduled_operation_id=operation.id,
            )
        except Conflict as exc:
            # The plan's previous checkpoint is still protecting (one protect per plan at a time):
            # this tick is skipped, not queued behind it, and the log says why.
            log.warning("operation %s: tick %s skipped: %s", operation.id, expect_start_time, exc.message)
            return _finish(run, RunState.SKIPPED, now, reason=exc.message, code="plan_busy")
        except KarborError as exc:
            log.warning("operation %s: checkpoint refused: %s", operation.id, exc.message)
            return _finish(run, RunState.FAILED, now, reason=exc.message)
        run.checkpoint_id = checkpoint.id
        run.actual_start_time = now
        run.save(update_fields=["checkpoint_id", "actual_start_time", "updated_at"])
        _state_set(operation, state=OperationState.RUNNING, last_run_at=now, last_result=RunState.IN_PROGRESS)
        transaction.on_commit(lambda: _enqueue_finish(run.pk))
    return run


def operation_run_now(*, operation: ScheduledOperation, now: dt.datetime | None = None) -> ScheduledOperationLog:
    """The admin's "run now": the same run as a tick, for the current instant, without the window check."""
    now = now or timezone.now()
    run = operation_run(operation=operation, expect_start_time=now, now=now, manual=True)
    if run is None:  # only if the same instant was already taken, which a clock tick cannot repeat
        raise Conflict(f"Scheduled operation {operation.id} already ran at {now}.")
    return run


def _skip_reason(
    operation: ScheduledOperation, tick: dt.datetime, now: dt.datetime
) -> tuple[str, str] | None:
    window = operation.trigger.window
    if now > tick + dt.timedelta(seconds=window):
        late = int((now - tick).total_seconds())
        return SKIP_WINDOW, f"the tick could not start within its window of {window} s (it is {late} s late)"
    if _engine_disabled():
        return SKIP_ENGINE_DISABLED, "the operation engine is disabled (os-services)"
    plan_id = (operation.operation_definition or {}).get("plan_id")
    plan = Plan.objects.filter(pk=plan_id, project_id=operation.project_id).first()
    if plan is not None and plan.status == PlanStatus.SUSPENDED:
        return SKIP_SUSPENDED, f"plan {plan.id} is suspended"
    return None


def _engine_disabled() -> bool:
    """True when operation engines are registered and running, and all of them are disabled."""
    engines = [service for service in Service.objects.filter(binary=OPERATION_ENGINE_BINARY) if service_is_up(service)]
    return bool(engines) and all(service.disabled for service in engines)


def _enqueue_finish(run_id: int) -> None:
    from celery import current_app

    try:
        # By name: the task module imports this one, not the other way round.
        current_app.send_task(FINISH_TASK, args=(run_id,), countdown=settings.KARBOR_ENGINE_POLL_INTERVAL)
    except Exception:  # noqa: BLE001 - kombu raises many types; the log must not stay in_progress silently
        log.exception("could not queue the follow-up of scheduled run %s", run_id)
        ScheduledOperationLog.objects.filter(pk=run_id, state=RunState.IN_PROGRESS).update(
            extend_info={"reason": "the follow-up task could not be queued; retention not applied"}
        )


def _finish(
    run: ScheduledOperationLog, state: str, now: dt.datetime, *, reason: str | None = None, code: str | None = None,
    **info: Any,
) -> ScheduledOperationLog:
    run.state = state
    run.end_time = now
    extend = dict(run.extend_info or {})
    if reason:
        extend["reason"] = reason
    if code:
        extend["code"] = code
    extend.update(info)
    run.extend_info = extend
    run.save(update_fields=["state", "end_time", "extend_info", "updated_at"])
    _state_set(run.operation, state=OperationState.REGISTERED, last_run_at=run.triggered_time or now, last_result=state)
    return run


def _state_set(operation: ScheduledOperation, **values: Any) -> None:
    state, created = ScheduledOperationState.objects.get_or_create(
        operation=operation, defaults={"trigger_id": operation.trigger_id, **values}
    )
    if not created:
        for key, value in values.items():
            setattr(state, key, value)
        state.save(update_fields=[*values, "updated_at"])


# --- after the checkpoint --------------------------------------------------------------------


def run_finish(*, run_id: int, now: dt.datetime | None = None) -> bool:
    """Settle a run once its checkpoint is done; False while the checkpoint is still protecting.

    ``available``: apply the retention of a ``retention_protect`` operation, log ``success``.
    ``error`` (or gone): log ``failed`` with the checkpoint's reason.
    """
    now = now or timezone.now()
    with transaction.atomic():
        run = (
            ScheduledOperationLog.objects.select_for_update()
            .filter(pk=run_id, state=RunState.IN_PROGRESS)
            .first()
        )
        if run is None:
            return True  # settled already (a re-delivered message)
        checkpoint = Checkpoint.all_objects.filter(pk=run.checkpoint_id).first()
        if checkpoint is not None and checkpoint.status == CheckpointStatus.PROTECTING:
            return False
        if checkpoint is None or checkpoint.status in _FAILED_CHECKPOINT:
            reason = checkpoint.status_reason if checkpoint is not None else "the checkpoint is gone"
            _finish(run, RunState.FAILED, now, reason=reason or f"checkpoint {run.checkpoint_id} ended {checkpoint.status}")
            return True
        operation = run.operation
        deleted: list[str] = []
        if operation.operation_type == OperationType.RETENTION_PROTECT:
            deleted = retention_apply(operation=operation, keep_checkpoint_id=checkpoint.pk, now=now)
        _finish(run, RunState.SUCCESS, now, deleted_checkpoints=deleted)
    return True


def checkpoint_settled(*, checkpoint_id: str) -> None:
    """Hook for the protect flow: settle the scheduled run of a checkpoint that just ended, without waiting for the poll."""
    run_id = (
        ScheduledOperationLog.objects.filter(checkpoint_id=checkpoint_id, state=RunState.IN_PROGRESS)
        .values_list("pk", flat=True)
        .first()
    )
    if run_id is not None:
        run_finish(run_id=run_id)


@dataclass(frozen=True)
class RetentionPolicy:
    max_backups: int | None = None
    retention_days: int | None = None
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0

    @classmethod
    def from_definition(cls, definition: Mapping[str, Any]) -> RetentionPolicy:
        def number(key: str) -> int | None:
            value = definition.get(key)
            return int(value) if value not in (None, "") else None

        return cls(
            max_backups=number("max_backups"),
            retention_days=number("retention_duration"),
            keep_daily=number("keep_daily") or 0,
            keep_weekly=number("keep_weekly") or 0,
            keep_monthly=number("keep_monthly") or 0,
            keep_yearly=number("keep_yearly") or 0,
        )

    @property
    def gfs(self) -> tuple[tuple[int, Callable[[dt.datetime], tuple]], ...]:
        return (
            (self.keep_daily, lambda t: (t.year, t.month, t.day)),
            (self.keep_weekly, lambda t: tuple(t.isocalendar())[:2]),
            (self.keep_monthly, lambda t: (t.year, t.month)),
            (self.keep_yearly, lambda t: (t.year,)),
        )


def retention_victims(
    checkpoints: Iterable[tuple[str, dt.datetime]], *, keep_id: str, policy: RetentionPolicy, now: dt.datetime
) -> list[str]:
    """Ids of the (id, created_at) checkpoints the policy does not keep, oldest first."""
    newest_first = sorted(checkpoints, key=lambda item: (item[1], item[0]), reverse=True)
    has_limits = policy.max_backups is not None or policy.retention_days is not None
    has_gfs = any(count for count, _ in policy.gfs)
    if not has_limits and not has_gfs:
        return []
    kept = {keep_id}
    if has_limits:
        oldest_allowed = now - dt.timedelta(days=policy.retention_days) if policy.retention_days else None
        for index, (checkpoint_id, created_at) in enumerate(newest_first):
            within_count = policy.max_backups is None or index < policy.max_backups
            within_age = oldest_allowed is None or created_at >= oldest_allowed
            if within_count and within_age:
                kept.add(checkpoint_id)
    for count, bucket_of in policy.gfs:
        buckets: set[tuple] = set()
        for checkpoint_id, created_at in newest_first:
            if len(buckets) >= count:
                break
            bucket = bucket_of(created_at)
            if bucket not in buckets:
                buckets.add(bucket)
                kept.add(checkpoint_id)
    return [checkpoint_id for checkpoint_id, _ in reversed(newest_first) if checkpoint_id not in kept]


def retention_apply(*, operation: ScheduledOperation, keep_checkpoint_id: str, now: dt.datetime) -> list[str]:
    """Delete the plan's available checkpoints the operation's policy does not keep; return their ids."""
    from protection.services import checkpoint_delete

    definition = operation.operation_definition or {}
    policy = RetentionPolicy.from_definition(definition)
    candidates = Checkpoint.objects.filter(
        project_id=operation.project_id,
        plan_id=definition.get("plan_id"),
        provider_id=definition.get("provider_id"),
        status=CheckpointStatus.AVAILABLE,
    ).values_list("id", "created_at")
    by_id = {checkpoint_id: created_at for checkpoint_id, created_at in candidates}
    by_id.setdefault(keep_checkpoint_id, now)
    deleted = []
    for checkpoint_id in retention_victims(by_id.items(), keep_id=keep_checkpoint_id, policy=policy, now=now):
        checkpoint = Checkpoint.objects.filter(pk=checkpoint_id).first()
        if checkpoint is None:
            continue
        try:
            checkpoint_delete(checkpoint=checkpoint)
        except KarborError as exc:  # deleted or reset meanwhile: the next run looks again
            log.warning("retention of %s: checkpoint %s not deleted: %s", operation.id, checkpoint_id, exc.message)
            continue
        deleted.append(checkpoint_id)
    return deleted


# --- what the API and the admin show -----------------------------------------------------------


@dataclass(frozen=True)
class OperationStatus:
    next_run: dt.datetime | None
    last_run: dt.datetime | None
    last_result: str | None


def operation_status(operation: ScheduledOperation, *, now: dt.datetime | None = None) -> OperationStatus:
    """Next fire time (from the trigger's one evaluator), the last run's time and result."""
    now = now or timezone.now()
    next_run = None
    if not operation.deleted and operation.enabled:
        try:
            next_run = operation.trigger.next_fire_time(after=now)
        except ValueError:
            next_run = None
    state = ScheduledOperationState.objects.filter(operation_id=operation.pk).first()
    if state is None or state.last_run_at is None:
        return OperationStatus(next_run=next_run, last_run=None, last_result=None)
    return OperationStatus(next_run=next_run, last_run=state.last_run_at, last_result=state.last_result or None)
