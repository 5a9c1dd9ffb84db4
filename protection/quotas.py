"""Quotas: plans and checkpoints per project, defaults from the ``default`` quota class.

``in_use`` is counted from the live rows rather than kept in a usage table, so it can never
drift from what the project really holds.
"""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction

from karbor_site.errors import InvalidInput, QuotaExceeded
from protection.models import Checkpoint, CheckpointStatus, Quota, QuotaClass, QuotaResource

DEFAULT_CLASS = "default"
RESOURCES = tuple(QuotaResource.values)
# Checkpoints that no longer hold data do not count against the quota.
_GONE_CHECKPOINT_STATUSES = (CheckpointStatus.DELETED,)


def _builtin_defaults() -> dict[str, int]:
    return {"plans": settings.KARBOR_QUOTA_PLANS, "checkpoints": settings.KARBOR_QUOTA_CHECKPOINTS}


def quota_class_get(*, class_name: str) -> dict[str, int]:
    """Limits of a quota class; resources it does not set fall back to the settings' defaults."""
    limits = _builtin_defaults()
    for row in QuotaClass.objects.filter(class_name=class_name):
        limits[row.resource] = row.hard_limit
    return limits


def quota_defaults() -> dict[str, int]:
    return quota_class_get(class_name=DEFAULT_CLASS)


def quota_get(*, project_id: str) -> dict[str, int]:
    limits = quota_defaults()
    for row in Quota.objects.filter(project_id=project_id):
        limits[row.resource] = row.hard_limit
    return limits


def quota_usage(*, project_id: str) -> dict[str, int]:
    from plans.models import Plan

    return {
        "plans": Plan.objects.filter(project_id=project_id).count(),
        "checkpoints": Checkpoint.objects.filter(project_id=project_id)
        .exclude(status__in=_GONE_CHECKPOINT_STATUSES)
        .count(),
    }


def quota_detail(*, project_id: str) -> dict[str, dict[str, int]]:
    limits, usage = quota_get(project_id=project_id), quota_usage(project_id=project_id)
    return {name: {"limit": limits[name], "in_use": usage[name], "reserved": 0} for name in RESOURCES}


def parse_limits(values: dict[str, Any], *, prefix: str) -> dict[str, int]:
    """Karbor accepts ints or numeric strings ≥ -1; keys other than quota resources are ignored."""
    limits: dict[str, int] = {}
    for name in RESOURCES:
        if name not in values:
            continue
        raw = values[name]
        if isinstance(raw, bool):
            raise InvalidInput.for_field(f"{prefix}.{name}", "must be an integer")
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise InvalidInput.for_field(f"{prefix}.{name}", f"must be an integer, got {raw!r}") from None
        if value < -1:
            raise InvalidInput.for_field(f"{prefix}.{name}", "must be -1 (unlimited) or more")
        limits[name] = value
    return limits


@transaction.atomic
def quota_set(*, project_id: str, limits: dict[str, int]) -> dict[str, int]:
    for name, value in limits.items():
        Quota.objects.update_or_create(project_id=project_id, resource=name, defaults={"hard_limit": value})
    return quota_get(project_id=project_id)


@transaction.atomic
def quota_delete(*, project_id: str) -> None:
    """Back to the defaults: the project's own limits are soft-deleted."""
    for row in Quota.objects.filter(project_id=project_id):
        row.soft_delete()


@transaction.atomic
def quota_class_set(*, class_name: str, limits: dict[str, int]) -> dict[str, int]:
    for name, value in limits.items():
        QuotaClass.objects.update_or_create(class_name=class_name, resource=name, defaults={"hard_limit": value})
    return quota_class_get(class_name=class_name)


def quota_check(*, project_id: str, resource: str, adding: int = 1) -> None:
    """Raise Karbor's 413 when adding ``adding`` more of ``resource`` would pass the limit.

    Call inside the transaction that creates the row, after locking the project (see
    ``lock_project``), so two concurrent creates cannot both slip under the limit.
    """
    limit = quota_get(project_id=project_id)[resource]
    if limit < 0:
        return
    in_use = quota_usage(project_id=project_id)[resource]
    if in_use + adding > limit:
        raise QuotaExceeded(f"Maximum number of {resource} allowed ({limit}) exceeded")


def lock_project(project_id: str) -> None:
    """Serialise quota-checked creates of one project (a row lock on PostgreSQL/MySQL)."""
    from karbor_site.tenancy.models import Project

    list(Project.objects.select_for_update().filter(id=project_id).values_list("id", flat=True))
