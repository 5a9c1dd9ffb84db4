"""Protection tables: the worker registry (``services`` seed table), the checkpoint catalog,
operation logs, verifications and quotas (Karbor's later tables)."""
from __future__ import annotations

from django.db import models
from django.utils import timezone

from karbor_site.db import JSONTextField, SoftDeleteModel, new_uuid
from operations.models import OperationRow


class Service(SoftDeleteModel):
    """A registered worker process (``karbor-protection``) or scheduler (``karbor-operationengine``).

    ``modified_at`` is the last heartbeat; a service whose heartbeat is older than
    KARBOR_SERVICE_DOWN_TIME is reported ``down``.
    """

    id = models.AutoField(primary_key=True)
    host = models.CharField(max_length=255)
    binary = models.CharField(max_length=255)
    topic = models.CharField(max_length=255)
    report_count = models.IntegerField(default=0)
    disabled = models.BooleanField(default=False)
    disabled_reason = models.CharField(max_length=255, blank=True, default="")
    modified_at = models.DateTimeField(default=timezone.now)
    rpc_current_version = models.CharField(max_length=36, blank=True, default="")
    rpc_available_version = models.CharField(max_length=36, blank=True, default="")

    class Meta:
        db_table = "services"

    def __str__(self) -> str:
        return f"{self.binary}@{self.host}"


class CheckpointStatus(models.TextChoices):
    PROTECTING = "protecting", "protecting"
    AVAILABLE = "available", "available"
    ERROR = "error", "error"
    DELETING = "deleting", "deleting"
    DELETED = "deleted", "deleted"
    ERROR_DELETING = "error-deleting", "error-deleting"
    WAIT_COPYING = "wait_copying", "wait_copying"
    COPYING = "copying", "copying"


class Checkpoint(OperationRow, SoftDeleteModel):
    """Catalog row of a checkpoint. The bank's manifest is the truth; this table can be rebuilt from it."""

    id = models.CharField(max_length=36, primary_key=True, default=new_uuid)
    project_id = models.CharField(max_length=255, db_index=True)
    provider_id = models.CharField(max_length=36, db_index=True)
    plan_id = models.CharField(max_length=36, db_index=True)
    status = models.CharField(max_length=64, choices=CheckpointStatus.choices, default=CheckpointStatus.PROTECTING)
    status_reason = models.TextField(blank=True, default="")
    protection_plan = JSONTextField(default=dict)
    resource_graph = JSONTextField(null=True, blank=True)
    # Per resource ("<type>#<id>"): what the plugin's protect returned (its saved_info_schema).
    saved_info = JSONTextField(default=dict)
    extra_info = JSONTextField(default=dict)
    bytes_done = models.BigIntegerField(default=0)
    bytes_total = models.BigIntegerField(null=True, blank=True)
    items_done = models.BigIntegerField(default=0)
    items_total = models.BigIntegerField(null=True, blank=True)
    # A copy (``protection.copies``): the checkpoint of another provider it was copied from.
    copy_of = models.CharField(max_length=36, blank=True, default="", db_index=True)

    class Meta:
        db_table = "checkpoints"
        constraints = [
            # The per-plan lock: two protects of one plan never run at once (SQLite and PostgreSQL
            # both enforce partial unique indexes; checkpoint_create turns a violation into a 409).
            models.UniqueConstraint(
                fields=["plan_id"], condition=models.Q(status="protecting"), name="one_protecting_checkpoint_per_plan"
            )
        ]

    def __str__(self) -> str:
        return f"checkpoint {self.id} ({self.status})"


class OperationLog(SoftDeleteModel):
    """One row per protect, delete, copy, restore, verify flow and scheduled run."""

    id = models.CharField(max_length=36, primary_key=True, default=new_uuid)
    project_id = models.CharField(max_length=255, db_index=True)
    operation_type = models.CharField(max_length=36)
    checkpoint_id = models.CharField(max_length=36, null=True, blank=True, db_index=True)
    plan_id = models.CharField(max_length=36, null=True, blank=True, db_index=True)
    provider_id = models.CharField(max_length=36, null=True, blank=True)
    restore_id = models.CharField(max_length=36, null=True, blank=True, db_index=True)
    scheduled_operation_id = models.CharField(max_length=36, null=True, blank=True)
    status = models.CharField(max_length=64)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    error_info = models.TextField(null=True, blank=True)
    extra_info = JSONTextField(null=True, blank=True)
    bytes_done = models.BigIntegerField(default=0)
    bytes_total = models.BigIntegerField(null=True, blank=True)
    items_done = models.BigIntegerField(default=0)
    items_total = models.BigIntegerField(null=True, blank=True)

    class Meta:
        db_table = "operation_logs"

    def __str__(self) -> str:
        return f"{self.operation_type} {self.id} ({self.status})"


class Verification(OperationRow, SoftDeleteModel):
    """A verification of one checkpoint: every chunk re-read and checked."""

    id = models.CharField(max_length=36, primary_key=True, default=new_uuid)
    project_id = models.CharField(max_length=255, db_index=True)
    provider_id = models.CharField(max_length=36)
    checkpoint_id = models.CharField(max_length=36, db_index=True)
    parameters = JSONTextField(default=dict)
    status = models.CharField(max_length=64, default="in_progress")

    class Meta:
        db_table = "verifications"

    def __str__(self) -> str:
        return f"verification {self.id} ({self.status})"


class QuotaResource(models.TextChoices):
    PLANS = "plans", "plans"
    CHECKPOINTS = "checkpoints", "checkpoints"


class Quota(SoftDeleteModel):
    """A per-project limit overriding the default quota class (-1 = unlimited)."""

    id = models.AutoField(primary_key=True)
    project_id = models.CharField(max_length=255, db_index=True)
    resource = models.CharField(max_length=255, choices=QuotaResource.choices)
    hard_limit = models.IntegerField()

    class Meta:
        db_table = "quotas"
        constraints = [
            models.UniqueConstraint(
                fields=["project_id", "resource"], condition=models.Q(deleted=False), name="unique_live_project_quota"
            )
        ]

    def __str__(self) -> str:
        return f"{self.project_id} {self.resource}={self.hard_limit}"


class QuotaClass(SoftDeleteModel):
    """A named set of limits; the ``default`` class gives every project its defaults."""

    id = models.AutoField(primary_key=True)
    class_name = models.CharField(max_length=255, db_index=True)
    resource = models.CharField(max_length=255, choices=QuotaResource.choices)
    hard_limit = models.IntegerField()

    class Meta:
        db_table = "quota_classes"
        constraints = [
            models.UniqueConstraint(
                fields=["class_name", "resource"], condition=models.Q(deleted=False), name="unique_live_quota_class"
            )
        ]

    def __str__(self) -> str:
        return f"{self.class_name} {self.resource}={self.hard_limit}"


class BankGcRequest(models.Model):
    """A provider's bank needs garbage collection: one row per provider, debouncing the GC runs.

    Deletes only mark their provider here (``requested_at``); whoever flips ``queued`` from
    false to true sends the one GC task, which flips it back before it starts, so N deletes
    of one provider close together cost one GC, and a delete during a GC queues the next. A GC
    queued longer than KARBOR_QUEUED_TIMEOUT ago (its message lost) is queued again.
    """

    provider_id = models.CharField(max_length=36, primary_key=True)
    requested_at = models.DateTimeField(default=timezone.now)
    queued = models.BooleanField(default=False)
    queued_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "bank_gc_requests"

    def __str__(self) -> str:
        return f"GC of {self.provider_id} ({'queued' if self.queued else 'idle'})"
