"""Writes of the checkpoint catalog: create (and queue the protect flow), delete, reset state, rebuild.

The API, the admin actions, the management commands and the scheduled operations all call
these; the flows themselves are in ``protection.flows`` and run in a Celery worker.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from karbor_site.api.exceptions import Conflict, InvalidInput, NotFound
from plans.models import Plan
from protection import flows
from protection.bank import BankError
from protection.banks import bank_for_provider
from protection.models import Checkpoint, CheckpointStatus, OperationLog
from protection.quotas import lock_project, quota_check
from providers.registry import get_registry

log = logging.getLogger(__name__)

CREATED_BY_MANUAL = "manual"
CREATED_BY_ENGINE = "operation-engine"
DELETABLE = (CheckpointStatus.AVAILABLE, CheckpointStatus.ERROR, CheckpointStatus.ERROR_DELETING)
RESETTABLE_FROM = (
    CheckpointStatus.AVAILABLE, CheckpointStatus.ERROR, CheckpointStatus.COPYING, CheckpointStatus.WAIT_COPYING,
)
RESET_STATES = (CheckpointStatus.AVAILABLE, CheckpointStatus.ERROR)


def _plan_snapshot(plan: Plan) -> dict[str, Any]:
    """The plan as the checkpoint keeps it: resources and parameters at the time of the request."""
    resources = []
    for resource in plan.resources.all():
        item = {"id": resource.resource_id, "type": resource.resource_type, "name": resource.resource_name}
        if resource.resource_extra_info is not None:
            item["extra_info"] = resource.resource_extra_info
        resources.append(item)
    return {
        "id": plan.id,
        "name": plan.name,
        "provider_id": plan.provider_id,
        "resources": resources,
        "parameters": plan.parameters or {},
    }


def checkpoint_create(
    *,
    project_id: str,
    provider_id: str,
    plan_id: str,
    extra_info: dict[str, Any] | None = None,
    created_by: str = CREATED_BY_MANUAL,
    scheduled_operation_id: str | None = None,
    enqueue: bool = True,
) -> Checkpoint:
    """Create a ``protecting`` checkpoint of a plan and queue its protect flow after commit.

    Raises NotFound (unknown provider, or no such plan in ``project_id``), InvalidInput (the
    plan belongs to another provider) or QuotaExceeded; on any of them nothing is written.
    ``extra_info`` is stored as given, with ``created_by`` set by the caller kind.
    """
    provider = get_registry().get(provider_id)
    with transaction.atomic():
        lock_project(project_id)
        plan = Plan.objects.prefetch_related("resources").filter(project_id=project_id, pk=plan_id).first()
        if plan is None:
            raise NotFound(f"Plan {plan_id} could not be found.")
        if plan.provider_id != provider.id:
            raise InvalidInput(
                f"Invalid plan: plan {plan.id} belongs to provider {plan.provider_id}, not {provider.id}.",
                fields={"provider_id": [f"the plan's provider is {plan.provider_id}"]},
            )
        quota_check(project_id=project_id, resource="checkpoints")
        info = dict(extra_info or {})
        info["created_by"] = created_by
        if scheduled_operation_id:
            info["scheduled_operation_id"] = scheduled_operation_id
        now = timezone.now()
        checkpoint = Checkpoint.objects.create(
            project_id=project_id,
            provider_id=provider.id,
            plan_id=plan.id,
            status=CheckpointStatus.PROTECTING,
            protection_plan=_plan_snapshot(plan),
            extra_info=info,
            resources_status={},
            resources_reason={},
            created_at=now,
        )
        OperationLog.objects.create(
            project_id=project_id,
            operation_type=flows.PROTECT,
            checkpoint_id=checkpoint.id,
            plan_id=plan.id,
            provider_id=provider.id,
            scheduled_operation_id=scheduled_operation_id,
            status=CheckpointStatus.PROTECTING,
            started_at=now,
            extra_info=info,
        )
        if enqueue:
            transaction.on_commit(lambda: _enqueue("checkpoint_protect", checkpoint.id))
    return checkpoint


def _enqueue(task_name: str, checkpoint_id: str) -> None:
    """Send the flow's task; a broker that refuses it fails the checkpoint now, with the reason."""
    from protection import tasks

    try:
        getattr(tasks, task_name).delay(checkpoint_id)
    except Exception as exc:  # noqa: BLE001 - kombu raises many types; the row must not wait forever
        log.exception("could not queue %s for checkpoint %s", task_name, checkpoint_id)
        running = CheckpointStatus.PROTECTING if task_name == "checkpoint_protect" else CheckpointStatus.DELETING
        reason = f"The task could not be queued: {type(exc).__name__}: {exc}"
        now = timezone.now()
        if Checkpoint.all_objects.filter(pk=checkpoint_id, status=running, worker="").update(
            status=CheckpointStatus.ERROR, status_reason=reason, updated_at=now
        ):
            OperationLog.all_objects.filter(checkpoint_id=checkpoint_id, ended_at__isnull=True).update(
                status=CheckpointStatus.ERROR, error_info=reason, ended_at=now
            )


def checkpoint_delete(*, checkpoint: Checkpoint, enqueue: bool = True) -> Checkpoint:
    """``available``/``error`` → ``deleting``, and queue the delete flow; 409 naming the status otherwise."""
    with transaction.atomic():
        now = timezone.now()
        changed = Checkpoint.objects.filter(pk=checkpoint.pk, status__in=DELETABLE).update(
            status=CheckpointStatus.DELETING, status_reason="", worker="", heartbeat_at=None, updated_at=now
        )
        if changed != 1:
            current = Checkpoint.all_objects.filter(pk=checkpoint.pk).values_list("status", flat=True).first()
            raise Conflict(
                f"Checkpoint {checkpoint.pk} can not be deleted while it is {current or 'gone'}; "
                f"only {', '.join(DELETABLE)} checkpoints can be deleted."
            )
        OperationLog.objects.create(
            project_id=checkpoint.project_id,
            operation_type=flows.DELETE,
            checkpoint_id=checkpoint.pk,
            plan_id=checkpoint.plan_id,
            provider_id=checkpoint.provider_id,
            status=CheckpointStatus.DELETING,
            started_at=now,
        )
        if enqueue:
            transaction.on_commit(lambda: _enqueue("checkpoint_delete", checkpoint.pk))
    return Checkpoint.all_objects.get(pk=checkpoint.pk)


def checkpoint_reset_state(*, checkpoint: Checkpoint, state: str) -> Checkpoint:
    """Karbor's ``os-resetState``: force ``available`` or ``error`` on a checkpoint that is not running."""
    if state not in RESET_STATES:
        raise InvalidInput.for_field("os-resetState.state", f"must be one of {', '.join(RESET_STATES)}")
    changed = Checkpoint.objects.filter(pk=checkpoint.pk, status__in=RESETTABLE_FROM).update(
        status=state, status_reason="state reset by an administrator", updated_at=timezone.now()
    )
    if changed != 1:
        current = Checkpoint.all_objects.filter(pk=checkpoint.pk).values_list("status", flat=True).first()
        raise InvalidInput(
            f"Invalid checkpoint: its state can not be reset while it is {current}; "
            f"allowed from {', '.join(RESETTABLE_FROM)}.",
            fields={"os-resetState.state": [f"the checkpoint is {current}"]},
        )
    return Checkpoint.objects.get(pk=checkpoint.pk)


# --- catalog rebuild -------------------------------------------------------------------
CATALOG_FIELDS = (
    "project_id", "provider_id", "plan_id", "protection_plan", "resource_graph", "resources_status",
    "resources_reason", "saved_info", "extra_info",
)


@dataclass
class CatalogReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def catalog_rebuild(*, provider_id: str | None = None) -> CatalogReport:
    """Recreate the ``checkpoints`` rows from the banks' manifests (their ``meta["checkpoint"]``).

    A manifest without a row gets an ``available`` row; an ``available`` row is refreshed from
    its manifest; an ``available`` row whose manifest is gone becomes ``error`` with the reason.
    Rows in other states are left alone (a flow may be running on them).
    """
    report = CatalogReport()
    registry = get_registry()
    providers = [registry.get(provider_id)] if provider_id else registry.providers()
    for provider in providers:
        try:
            bank = bank_for_provider(provider)
            manifest_ids = set(bank.list_manifests())
        except BankError as exc:
            report.errors.append(f"provider {provider.id}: {exc}")
            continue
        for manifest_id in sorted(manifest_ids):
            try:
                meta = (bank.read_manifest(manifest_id).meta or {}).get("checkpoint")
            except BankError as exc:
                report.errors.append(f"checkpoint {manifest_id}: {exc}")
                continue
            if not isinstance(meta, dict) or meta.get("id") != manifest_id:
                report.errors.append(f"checkpoint {manifest_id}: its manifest holds no catalog fields")
                continue
            values = {name: meta.get(name) for name in CATALOG_FIELDS}
            values["provider_id"] = provider.id
            for name in ("protection_plan", "resources_status", "resources_reason", "saved_info", "extra_info"):
                values[name] = values[name] or {}
            created_at = parse_datetime(meta["created_at"]) if meta.get("created_at") else None
            row = Checkpoint.all_objects.filter(pk=manifest_id).first()
            if row is None:
                Checkpoint.all_objects.create(
                    id=manifest_id, status=CheckpointStatus.AVAILABLE, created_at=created_at or timezone.now(),
                    bytes_done=meta.get("bytes_done") or 0, items_done=meta.get("items_done") or 0, **values
                )
                report.created.append(manifest_id)
            elif row.status == CheckpointStatus.AVAILABLE and not row.deleted:
                Checkpoint.all_objects.filter(pk=manifest_id, status=CheckpointStatus.AVAILABLE).update(**values)
                report.updated.append(manifest_id)
        lost = Checkpoint.objects.filter(provider_id=provider.id, status=CheckpointStatus.AVAILABLE).exclude(
            pk__in=manifest_ids
        )
        for checkpoint_id in list(lost.values_list("pk", flat=True)):
            Checkpoint.objects.filter(pk=checkpoint_id, status=CheckpointStatus.AVAILABLE).update(
                status=CheckpointStatus.ERROR, status_reason="its manifest is missing from the bank",
                updated_at=timezone.now(),
            )
            report.missing.append(checkpoint_id)
    return report
