"""Writes of the plans app: create, update (including start/suspend) and delete a plan."""
from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from karbor_site.errors import InvalidInput, NotFound
from plans.models import Plan, PlanStatus, Resource
from protection.quotas import lock_project, quota_check
from providers.config import ProviderConfig
from providers.constants import RESOURCE_TYPES
from providers.registry import get_registry
from providers.selectors import provider_instance_get
from providers.validation import parameters_validate

UNSET: Any = object()
PROVIDER_NOT_FOUND = "The provider could not be found."
ONLY_WHILE_SUSPENDED = "Invalid plan: The plan can be only updated in suspended status."


def _provider(provider_id: str) -> ProviderConfig:
    provider = get_registry().find(provider_id)
    if provider is None:
        raise InvalidInput(PROVIDER_NOT_FOUND, fields={"provider_id": [PROVIDER_NOT_FOUND]})
    return provider


def resources_validate(
    *, provider: ProviderConfig, project_id: str, resources: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every resource must be an instance ``project_id`` may protect through ``provider``.

    Raises InvalidInput naming ``resources.N.<field>``. The stored name and extra_info are the
    caller's (as in Karbor); flows look the instance up again by id and never trust them.
    """
    if not resources:
        raise InvalidInput.for_field("resources", "must be a non-empty list")
    seen: set[tuple[str, str]] = set()
    for index, resource in enumerate(resources):
        resource_type, resource_id = resource["type"], resource["id"]
        if resource_type not in RESOURCE_TYPES:
            raise InvalidInput.for_field(f"resources.{index}.type", f"unknown resource type {resource_type!r}")
        if resource_type not in provider.plugins:
            raise InvalidInput.for_field(
                f"resources.{index}.type", f"provider {provider.name} does not protect {resource_type}"
            )
        if (resource_type, resource_id) in seen:
            raise InvalidInput.for_field(f"resources.{index}.id", f"{resource_type} {resource_id} is listed twice")
        seen.add((resource_type, resource_id))
        try:
            provider_instance_get(
                provider=provider, project_id=project_id, resource_type=resource_type, instance_id=resource_id
            )
        except NotFound:
            raise InvalidInput.for_field(
                f"resources.{index}.id",
                f"{resource_type} {resource_id} is not a protectable instance of this project on provider {provider.id}",
            ) from None
    return resources


def _create_resources(plan: Plan, resources: list[dict[str, Any]]) -> None:
    Resource.objects.bulk_create(
        [
            Resource(
                plan=plan,
                resource_id=resource["id"],
                resource_type=resource["type"],
                resource_name=resource["name"],
                resource_extra_info=resource.get("extra_info"),
            )
            for resource in resources
        ]
    )


@transaction.atomic
def plan_create(
    *,
    project_id: str,
    provider_id: str,
    resources: list[dict[str, Any]],
    parameters: dict[str, Any],
    name: str | None = None,
    description: str | None = None,
) -> Plan:
    """Create a ``suspended`` plan after checking the provider, the resources, the parameters and the quota.

    A project at its ``plans`` quota gets Karbor's 413 and nothing is written.
    """
    provider = _provider(provider_id)
    resources_validate(provider=provider, project_id=project_id, resources=resources)
    cleaned = parameters_validate(provider=provider, parameters=parameters)
    lock_project(project_id)  # two concurrent creates cannot both slip under the limit
    quota_check(project_id=project_id, resource="plans")
    plan = Plan.objects.create(
        project_id=project_id,
        provider_id=provider.id,
        name=name or "",
        description=description,
        parameters=cleaned,
        status=PlanStatus.SUSPENDED,
    )
    _create_resources(plan, resources)
    return plan


@transaction.atomic
def plan_update(
    *,
    project_id: str,
    plan_id: str,
    name: str | None = UNSET,
    description: str | None = UNSET,
    resources: list[dict[str, Any]] = UNSET,
    status: str = UNSET,
) -> Plan:
    """Change name, description, resources or status.

    As in Karbor a plan changes only while ``suspended``; in addition a ``started`` plan may be
    set back to ``suspended`` (and only that). The row is locked so two updates cannot both
    pass the status check. Old resource rows are soft-deleted and replaced.
    """
    changes = {
        key: value
        for key, value in {"name": name, "description": description, "resources": resources, "status": status}.items()
        if value is not UNSET
    }
    if not changes:
        raise InvalidInput("Missing updated parameters in request body.", fields={"plan": ["no field to update"]})
    plan = Plan.objects.select_for_update().filter(project_id=project_id, pk=plan_id).first()
    if plan is None:
        raise NotFound(f"Plan {plan_id} could not be found.")
    if status is not UNSET and status not in PlanStatus.values:
        raise InvalidInput.for_field("status", f"must be one of {', '.join(PlanStatus.values)}")
    resuming_suspend = changes == {"status": PlanStatus.SUSPENDED}
    if plan.status != PlanStatus.SUSPENDED and not resuming_suspend:
        raise InvalidInput(ONLY_WHILE_SUSPENDED, fields={"status": [f"the plan is {plan.status}"]})
    if resources is not UNSET:
        provider = _provider(plan.provider_id)
        resources_validate(provider=provider, project_id=project_id, resources=resources)
        now = timezone.now()
        plan.resources.all().update(deleted=True, deleted_at=now, updated_at=now)
        _create_resources(plan, resources)
    fields = ["updated_at"]
    if name is not UNSET:
        plan.name = name or ""
        fields.append("name")
    if description is not UNSET:
        plan.description = description
        fields.append("description")
    if status is not UNSET:
        plan.status = status
        fields.append("status")
    plan.save(update_fields=fields)
    return Plan.objects.prefetch_related("resources").get(pk=plan.pk)


@transaction.atomic
def plan_delete(*, project_id: str, plan_id: str) -> None:
    """Soft-delete the plan and its resources (any status, as in Karbor)."""
    plan = Plan.objects.select_for_update().filter(project_id=project_id, pk=plan_id).first()
    if plan is None:
        raise NotFound(f"Plan {plan_id} could not be found.")
    now = timezone.now()
    plan.resources.all().update(deleted=True, deleted_at=now, updated_at=now)
    plan.soft_delete()
