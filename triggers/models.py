"""The ``triggers`` and ``scheduled_operations`` seed tables."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from django.db import models

from karbor_site.db import JSONTextField, SoftDeleteModel, new_uuid
from triggers import timeparse


class Trigger(SoftDeleteModel):
    """When something runs: a time trigger with a crontab or calendar pattern."""

    id = models.CharField(max_length=36, primary_key=True, default=new_uuid)
    name = models.CharField(max_length=255)
    project_id = models.CharField(max_length=255, db_index=True)
    type = models.CharField(max_length=64)
    properties = JSONTextField(default=dict)

    class Meta:
        db_table = "triggers"

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    @property
    def start_time(self) -> dt.datetime | None:
        raw = (self.properties or {}).get("start_time")
        return timeparse.parse_time(raw) if raw else None

    @property
    def end_time(self) -> dt.datetime | None:
        raw = (self.properties or {}).get("end_time")
        return timeparse.parse_time(raw) if raw else None

    @property
    def window(self) -> int:
        """Seconds after a fire time during which its operations may still start."""
        return int((self.properties or {}).get("window") or 0)

    def fire_times(self, *, after: dt.datetime | None = None) -> Iterator[dt.datetime]:
        """This trigger's fire times (aware UTC) after ``after``; see ``timeparse.fire_times``."""
        props = self.properties or {}
        start = self.start_time or self.created_at
        return timeparse.fire_times(
            props.get("format", ""), props.get("pattern", ""), start_time=start, end_time=self.end_time, after=after
        )

    def next_fire_time(self, *, after: dt.datetime) -> dt.datetime | None:
        """The first fire time strictly after ``after``, or None when the trigger is done."""
        return next(self.fire_times(after=after), None)


class OperationType(models.TextChoices):
    PROTECT = "protect", "protect"
    RETENTION_PROTECT = "retention_protect", "retention_protect"


class ScheduledOperation(SoftDeleteModel):
    """What runs when a trigger fires. ``description``, ``enabled`` and ``user_id`` are Karbor's later columns."""

    id = models.CharField(max_length=36, primary_key=True, default=new_uuid)
    name = models.CharField(max_length=255)
    description = models.CharField(max_length=255, null=True, blank=True)
    operation_type = models.CharField(max_length=64, choices=OperationType.choices)
    project_id = models.CharField(max_length=255, db_index=True)
    user_id = models.CharField(max_length=64, null=True, blank=True)
    trigger = models.ForeignKey(
        Trigger, on_delete=models.PROTECT, related_name="scheduled_operations", db_column="trigger_id"
    )
    operation_definition = JSONTextField(default=dict)
    enabled = models.BooleanField(default=True)

    class Meta:
        db_table = "scheduled_operations"

    def __str__(self) -> str:
        return f"{self.name} ({self.operation_type}, {self.id})"


class OperationState(models.TextChoices):
    """Karbor's operation-engine states of a scheduled operation."""

    REGISTERED = "registered", "registered"
    TRIGGERED = "triggered", "triggered"
    RUNNING = "running", "running"
    DELETED = "deleted", "deleted"


class ScheduledOperationState(SoftDeleteModel):
    """One row per scheduled operation: where the engine is with it and how its last run ended.

    Karbor's ``scheduled_operation_states`` plus ``last_run_at`` / ``last_result`` (what the API
    and the admin show); ``end_time_for_run`` is the end of the window of the tick being run.
    """

    id = models.AutoField(primary_key=True)
    operation = models.OneToOneField(
        ScheduledOperation, on_delete=models.CASCADE, related_name="state", db_column="operation_id"
    )
    service_id = models.IntegerField(null=True, blank=True)
    trigger_id = models.CharField(max_length=36)
    state = models.CharField(max_length=32, choices=OperationState.choices, default=OperationState.REGISTERED)
    end_time_for_run = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_result = models.CharField(max_length=32, blank=True, default="")

    class Meta:
        db_table = "scheduled_operation_states"

    def __str__(self) -> str:
        return f"{self.operation_id}: {self.state}"


class RunState(models.TextChoices):
    IN_PROGRESS = "in_progress", "in_progress"
    SUCCESS = "success", "success"
    FAILED = "failed", "failed"
    SKIPPED = "skipped", "skipped"


class ScheduledOperationLog(SoftDeleteModel):
    """One row per (scheduled operation, tick): the run, or why it was skipped.

    The unique (operation, expect_start_time) pair is what makes a tick run once, however many
    beat processes sent it and however many workers received it: the run starts only after its
    row was inserted. ``checkpoint_id`` and ``extend_info`` (reason, deleted checkpoints) are ours.
    """

    id = models.AutoField(primary_key=True)
    operation = models.ForeignKey(
        ScheduledOperation, on_delete=models.CASCADE, related_name="logs", db_column="operation_id"
    )
    expect_start_time = models.DateTimeField()
    triggered_time = models.DateTimeField(null=True, blank=True)
    actual_start_time = models.DateTimeField(null=True, blank=True)
    end_time = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=32, choices=RunState.choices)
    checkpoint_id = models.CharField(max_length=36, null=True, blank=True)
    extend_info = JSONTextField(default=dict)

    class Meta:
        db_table = "scheduled_operation_logs"
        constraints = [
            models.UniqueConstraint(fields=["operation", "expect_start_time"], name="scheduled_operation_log_once"),
        ]
        indexes = [models.Index(fields=["operation", "-expect_start_time"], name="sched_op_log_recent")]

    def __str__(self) -> str:
        return f"{self.operation_id} @ {self.expect_start_time}: {self.state}"
