"""The ``restores`` seed table."""
from __future__ import annotations

from django.db import models

from karbor_site.db import JSONTextField, SoftDeleteModel, new_uuid
from operations.models import OperationRow


class RestoreStatus(models.TextChoices):
    IN_PROGRESS = "in_progress", "in_progress"
    SUCCESS = "success", "success"
    FAIL = "fail", "fail"


class Restore(OperationRow, SoftDeleteModel):
    """A restore of one checkpoint, in place or to a target the operator allows.

    ``parameters`` is widened from the seed's varchar(255) to TEXT, as Karbor itself did;
    ``resources_status``/``resources_reason`` are Karbor's later additions.
    """

    id = models.CharField(max_length=36, primary_key=True, default=new_uuid)
    project_id = models.CharField(max_length=255, db_index=True)
    provider_id = models.CharField(max_length=36)
    checkpoint_id = models.CharField(max_length=36, db_index=True)
    restore_target = models.CharField(max_length=255, blank=True, default="")
    parameters = JSONTextField(default=dict)
    status = models.CharField(max_length=64, choices=RestoreStatus.choices, default=RestoreStatus.IN_PROGRESS)

    class Meta:
        db_table = "restores"

    def __str__(self) -> str:
        return f"restore {self.id} of {self.checkpoint_id} ({self.status})"
