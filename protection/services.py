"""Writes of the checkpoint catalog: create (and queue the protect flow), delete, reset state, rebuild.

The API, the admin actions, the management commands and the scheduled operations all call
these; the flows themselves are in ``protection.flows`` and run in a Celery worker.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from karbor_site.errors import Conflict, InvalidInput, NotFound
from operations.kinds import registered_kinds
from operations.reaper import reap_dead_flows
from operations.runner import operation_create, operation_enqueue_on_commit
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
    plan belongs to another provider), QuotaExceeded or Conflict (the plan has a checkpoint
    ``protecting`` already: two protects of one plan never run at once); on any of them nothing
    is written. ``extra_info`` is stored as given, with ``created_by`` set by the caller kind.
    A broker that refuses the task leaves the checkpoint ``error`` and raises ServiceUnavailable.
    """
    provider = get_registry().get(provider_id)
    try:
        with transaction.atomic():
            return _checkpoint_create(
                project_id=project_id, provider=provider, plan_id=plan_id, extra_info=extra_info,
                created_by=created_by, scheduled_operation_id=scheduled_operation_id, enqueue=enqueue,
            )
    except IntegrityError as exc:
        # The partial unique index (one ``protecting`` checkpoint per plan) caught a race the
        # plan row lock could not (a database without row locks).
        if Checkpoint.objects.filter(plan_id=plan_id, status=CheckpointStatus.PROTECTING).exists():
            raise _plan_busy(plan_id) from exc
        raise


def _plan_busy(plan_id: str) -> Conflict:
    return Conflict(
        f"Plan {plan_id} is being protected already; wait for its checkpoint to finish.",
        fields={"plan_id": ["a checkpoint of this plan is protecting"]},
    )


def _checkpoint_create(
    *, project_id: str, provider, plan_id: str, extra_info: dict[str, Any] | None, created_by: str,
    scheduled_operation_id: str | None, enqueue: bool,
) -> Checkpoint:
    lock_project(project_id)
    # The plan row lock serialises two creates of one plan; the second then sees the first's row.
    plan = Plan.objects.select_for_update().filter(project_id=project_id, pk=plan_id).first()
    if plan is None:
        raise NotFound(f"Plan {plan_id} could not be found.")
    if plan.provider_id != provider.id:
        raise InvalidInput(
            f"Invalid plan: plan {plan.id} belongs to provider {plan.provider_id}, not {provider.id}.",
            fields={"provider_id": [f"the plan's provider is {plan.provider_id}"]},
        )
    quota_check(project_id=project_id, resource="checkpoints")
    if Checkpoint.objects.filter(plan_id=plan.id, status=CheckpointStatus.PROTECTING).exists():
        raise _plan_busy(plan.id)
    info = dict(extra_info or {})
    info["created_by"] = created_by
    if scheduled_operation_id:
        info["scheduled_operation_id"] = scheduled_operation_id
    now = timezone.now()
    return operation_create(
        kind=flows.PROTECT_KIND, enqueue=enqueue, project_id=project_id, provider_id=provider.id, plan_id=plan.id,
        protection_plan=_plan_snapshot(plan), extra_info=info, resources_status={}, resources_reason={},
        created_at=now, log_values={"scheduled_operation_id": scheduled_operation_id, "started_at": now, "extra_info": info},
    )


def checkpoint_hold(*, checkpoint_id: str) -> Checkpoint:
    """Lock an ``available`` checkpoint row for the current transaction (Conflict otherwise).

    Whoever starts an operation that reads a checkpoint (restore, verify, copy) calls this in
    the transaction that creates its row: a concurrent delete waits for that transaction and
    then sees the running operation (``checkpoint_delete`` refuses), or the delete won and the
    checkpoint is no longer ``available``.
    """
    checkpoint = Checkpoint.objects.select_for_update().filter(pk=checkpoint_id).first()
    if checkpoint is None or checkpoint.status != CheckpointStatus.AVAILABLE:
        status = checkpoint.status if checkpoint else "gone"
        raise Conflict(
            f"Checkpoint {checkpoint_id} is {status}; only an available checkpoint can be used.",
            fields={"checkpoint_id": [f"the checkpoint is {status}, not available"]},
        )
    return checkpoint


def operations_holding(*, checkpoint_id: str) -> list[str]:
    """``"<kind> <id>"`` of every running operation that reads this checkpoint (restores, verifications…)."""
    held = []
    for kind in registered_kinds():
        if kind.holds_checkpoint:
            rows = kind.model.objects.filter(**{kind.holds_field: checkpoint_id}, status=kind.running)
            held += [f"{kind.label.lower()} {pk}" for pk in rows.values_list("pk", flat=True)]
    return held


def checkpoint_delete(*, checkpoint: Checkpoint, enqueue: bool = True) -> Checkpoint:
    """``available``/``error``/``error-deleting`` → ``deleting``, and queue the delete flow.

    Conflict (409) naming the status when the checkpoint is in another state, or naming the
    restores and verifications that are reading it.
    """
    with transaction.atomic():
        now = timezone.now()
        Checkpoint.objects.select_for_update().filter(pk=checkpoint.pk).first()
        holding = operations_holding(checkpoint_id=checkpoint.pk)
        if holding:
            raise Conflict(
                f"Checkpoint {checkpoint.pk} can not be deleted while it is being read by {', '.join(holding)}.",
                fields={"checkpoint_id": [f"in use by {', '.join(holding)}"]},
            )
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
            operation_enqueue_on_commit(kind=flows.DELETE_KIND, row_id=checkpoint.pk)
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
def _protect_failed(checkpoint_id: str) -> bool:
    """Its protect ended in ``error`` (not an administrator's reset of an available checkpoint)."""
    last = (OperationLog.all_objects.filter(checkpoint_id=checkpoint_id, operation_type=flows.PROTECT)
            .order_by("-created_at").values_list("status", flat=True).first())
    return last == CheckpointStatus.ERROR


def _reconcile_protect(row: Checkpoint) -> bool:
    """A failed protect whose complete manifest the bank holds (the worker died between the bank
    commit and the finish, and the row was failed first) becomes ``available`` from the manifest."""
    values = flows.checkpoint_from_manifest(row)
    if values is None:
        return False
    with transaction.atomic():
        now = timezone.now()
        if not Checkpoint.all_objects.filter(pk=row.pk, status=CheckpointStatus.ERROR).update(
            **values, status=CheckpointStatus.AVAILABLE, updated_at=now
        ):
            return False
        OperationLog.all_objects.filter(checkpoint_id=row.pk, operation_type=flows.PROTECT).update(
            status=CheckpointStatus.AVAILABLE, error_info=None
        )
    return True


CATALOG_FIELDS = (
    "project_id", "provider_id", "plan_id", "protection_plan", "resource_graph", "resources_status",
    "resources_reason", "saved_info", "extra_info",
)


@dataclass
class CatalogReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    reconciled: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def catalog_rebuild(*, provider_id: str | None = None) -> CatalogReport:
    """Recreate the ``checkpoints`` rows from the banks' manifests (their ``meta["checkpoint"]``).

    A manifest without a row gets an ``available`` row; an ``available`` row is refreshed from
    its manifest; an ``available`` row whose manifest is gone becomes ``error`` with the reason.
    The commit point is reconciled: the reaper first finishes (from the manifest) or fails
    the rows of dead workers, then an ``error`` row whose complete manifest the bank holds (a
    worker that died after the bank commit, failed before the manifest was seen) becomes
    ``available`` — no manifest stays pinned without its row. Rows still running are left alone.
    """
    report = CatalogReport()
    reap_dead_flows()
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
                    bytes_done=meta.get("bytes_done") or 0, items_done=meta.get("items_done") or 0,
                    copy_of=meta.get("copy_of") or "", **values
                )
                report.created.append(manifest_id)
            elif row.status == CheckpointStatus.AVAILABLE and not row.deleted:
                Checkpoint.all_objects.filter(pk=manifest_id, status=CheckpointStatus.AVAILABLE).update(**values)
                report.updated.append(manifest_id)
            elif row.status == CheckpointStatus.ERROR and not row.deleted and _protect_failed(manifest_id):
                if _reconcile_protect(row):
                    report.reconciled.append(manifest_id)
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
