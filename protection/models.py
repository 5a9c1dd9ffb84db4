"""The ``services`` seed table (the worker registry). Checkpoint catalog tables come with the flows."""
from __future__ import annotations

from django.db import models
from django.utils import timezone

from karbor_site.db import SoftDeleteModel


class Service(SoftDeleteModel):
    """A registered worker process (``karbor-protection``) or scheduler (``karbor-operationengine``)."""

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
