"""The ``plans`` and ``resources`` seed tables."""
from __future__ import annotations

from django.db import models

from karbor_site.db import JSONTextField, SoftDeleteModel, new_uuid


class PlanStatus(models.TextChoices):
    SUSPENDED = "suspended", "suspended"
    STARTED = "started", "started"


class Plan(SoftDeleteModel):
    """What a project protects: resources of one provider, with per-type parameters.

    ``description`` and ``parameters`` are not in the seed table; Karbor added both later.
    """

    id = models.CharField(max_length=36, primary_key=True, default=new_uuid)
    name = models.CharField(max_length=255)
    description = models.CharField(max_length=255, null=True, blank=True)
    provider_id = models.CharField(max_length=36)
    project_id = models.CharField(max_length=255, db_index=True)
    status = models.CharField(max_length=64, choices=PlanStatus.choices, default=PlanStatus.SUSPENDED)
    parameters = JSONTextField(default=dict)

    class Meta:
        db_table = "plans"

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class Resource(SoftDeleteModel):
    """One protectable instance in a plan.

    ``resource_name`` and ``resource_extra_info`` are Karbor's later additions to the seed table.
    """

    id = models.AutoField(primary_key=True)
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="resources", db_column="plan_id")
    resource_id = models.CharField(max_length=36)
    resource_type = models.CharField(max_length=64)
    resource_name = models.CharField(max_length=255, default="")
    resource_extra_info = JSONTextField(null=True, blank=True)

    class Meta:
        db_table = "resources"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.resource_type} {self.resource_name} ({self.resource_id})"
