"""The ``triggers`` and ``scheduled_operations`` seed tables."""
from __future__ import annotations

from django.db import models

from karbor_site.db import JSONTextField, SoftDeleteModel, new_uuid


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
