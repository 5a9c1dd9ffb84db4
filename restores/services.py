"""Writes of the restores app: request a restore (validated synchronously), mark one failed.

``restore_create`` checks everything it can before writing — provider, checkpoint (this
project's, ``available``), parameters against each plugin's ``restore_schema``, and the
restore target against the plugins' rules — and answers a 4xx naming the problem, creating
nothing. Then it writes the Restore row (``in_progress``, every resource ``restoring``) and
its OperationLog row in one transaction — holding the checkpoint row, so a concurrent delete
waits and then sees the running restore — and enqueues ``restores.restore_run`` after commit.
"""
from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from karbor_site.errors import Conflict, InvalidInput
from operations.runner import operation_create, operation_fail
from protection.models import Checkpoint
from protection.flows import plan_parameters_for, resource_key
from protection.services import checkpoint_hold
from providers.config import ProviderConfig
from providers.constants import split_parameter_key
from providers.plugins.base import Instance, PluginError
from providers.registry import get_registry
from providers.validation import parameters_validate
from restores.flows import RESTORE_KIND, RESTORING
from restores.models import Restore
from restores.selectors import checkpoint_for_operation, checkpoint_resources_required

log = logging.getLogger(__name__)


def parameters_check_resources(
    *, provider: ProviderConfig, parameters: dict[str, Any], resources: list[Instance], field: str = "parameters"
) -> None:
    """A ``type#id`` key of a type the provider serves must name a resource of the checkpoint."""
    known = {(r.type, r.id) for r in resources}
    for key in parameters:
        resource_type, resource_id = split_parameter_key(key)
        if resource_id and resource_type in provider.plugins and (resource_type, resource_id) not in known:
            raise InvalidInput.for_field(f"{field}.{key}", "no resource with this type and id in the checkpoint")


def saved_infos_by_id(checkpoint: Checkpoint) -> dict[str, dict]:
    """The checkpoint's per-resource saved info, keyed by resource id."""
    raw = getattr(checkpoint, "saved_info", None) or {}
    return {key.partition("#")[2] or key: value for key, value in raw.items() if isinstance(value, dict)}


def restore_target_check(
    *, provider: ProviderConfig, project_id: str, target: str | None, resources: list[Instance], checkpoint: Checkpoint
) -> None:
    """Every plugin that restores to paths checks ``target`` now; its refusal is a 400 on ``restore_target``."""
    by_type: dict[str, list[Instance]] = {}
    for resource in resources:
        by_type.setdefault(resource.type, []).append(resource)
    saved = saved_infos_by_id(checkpoint)
    for resource_type, group in by_type.items():
        plugin = provider.plugins.get(resource_type)
        if plugin is None:
            raise Conflict(
                f"Provider {provider.id} no longer serves {resource_type}; the checkpoint cannot be restored.",
                fields={"checkpoint_id": [f"{resource_type} is not served by provider {provider.id}"]},
            )
        check = getattr(plugin, "check_restore_target", None)
        if check is None:
            continue
        try:
            check(project_id=project_id, target=target, resources=group, saved_infos=saved)
        except PluginError as exc:
            raise InvalidInput.for_field("restore_target", str(exc)) from None


def restore_parameters_check(
    *, provider: ProviderConfig, project_id: str, parameters: dict[str, Any], resources: list[Instance]
) -> None:
    """Plugins that check restore parameters against the operator's declarations (a named restore
    target, the source still visible) do it now; a refusal is a 400 naming the resource's parameters."""
    for resource in resources:
        check = getattr(provider.plugins.get(resource.type), "check_restore_parameters", None)
        if check is None:
            continue
        try:
            check(project_id=project_id, resource=resource,
                  parameters=plan_parameters_for(parameters, resource.type, resource.id))
        except PluginError as exc:
            key = f"{resource.type}#{resource.id}"
            raise InvalidInput.for_field(f"parameters.{key if key in parameters else resource.type}", str(exc)) from None


def restore_create(
    *,
    project_id: str,
    provider_id: str,
    checkpoint_id: str,
    restore_target: str | None = None,
    parameters: dict[str, Any] | None = None,
    is_cloud_admin: bool = False,
    enqueue: bool = True,
) -> Restore:
    """Validate, then create an ``in_progress`` restore and its operation log; the flow runs on a worker.

    ``enqueue=False`` leaves the run to the caller (``manage.py restore`` runs it in-process).
    Raises NotFound (provider, checkpoint), Conflict (checkpoint not available) or InvalidInput.
    """
    provider = get_registry().get(provider_id)
    checkpoint = checkpoint_for_operation(
        project_id=project_id, provider_id=provider.id, checkpoint_id=checkpoint_id, is_cloud_admin=is_cloud_admin
    )
    resources = checkpoint_resources_required(checkpoint, action="restore")
    cleaned = parameters_validate(provider=provider, parameters=parameters or {}, schema_kind="restore_schema")
    parameters_check_resources(provider=provider, parameters=cleaned, resources=resources)
    restore_parameters_check(provider=provider, project_id=project_id, parameters=cleaned, resources=resources)
    target = (restore_target or "").strip() or None
    restore_target_check(provider=provider, project_id=project_id, target=target, resources=resources, checkpoint=checkpoint)

    with transaction.atomic():
        checkpoint_hold(checkpoint_id=checkpoint.id)
        restore = operation_create(
            kind=RESTORE_KIND, enqueue=enqueue, project_id=project_id, provider_id=provider.id,
            checkpoint_id=checkpoint.id, restore_target=target or "", parameters=cleaned,
            resources_status={resource_key(r.type, r.id): RESTORING for r in resources}, resources_reason={},
            log_values={"plan_id": checkpoint.plan_id},
        )
    return restore


def restore_fail(*, restore_id: str, reason: str) -> bool:
    """Mark an ``in_progress`` restore ``fail`` with ``reason`` on every unfinished resource (guarded)."""
    return operation_fail(kind=RESTORE_KIND, row_id=restore_id, reason=reason)
