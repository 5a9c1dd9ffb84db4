"""Verifications: request one (validated synchronously), run the verify flow, the admin action.

A verification re-reads every chunk of every item of a checkpoint through each resource's
plugin (``verify``): fetched from the pack, authenticated/decrypted, decompressed and
re-hashed. Per resource ``resources_status`` is ``available`` or ``error`` (reason in
``resources_reason``, naming the damaged items); the verification ends ``success`` or
``fail``. The OperationLog row (``operation_type="verify"``) has the verification's id as
its own id, so the two are linked without a column (Karbor's verify logs carry no id).

Status changes are guarded as for restores (``restores/flows.py``): claim with
``worker=''`` → mine, finish with ``status='in_progress' AND worker=<me>``.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.utils import timezone

from karbor_site.api.exceptions import Conflict, InvalidInput, KarborError, ServiceUnavailable
from protection.banks import bank_for_provider, resource_prefix
from protection.models import Checkpoint, OperationLog, Verification
from providers.plugins.base import PluginError, VerifyContext
from providers.registry import get_registry
from protection.heartbeats import FlowHeartbeat
from restores.progress import ProgressRecorder, worker_name
from restores.selectors import checkpoint_for_operation, checkpoint_resources, resource_key

log = logging.getLogger(__name__)

IN_PROGRESS, SUCCESS, FAIL = "in_progress", "success", "fail"
AVAILABLE, ERROR = "available", "error"
NO_PARAMETERS = "verifications take no parameters (providers publish no verify schema)"


# --- services ----------------------------------------------------------------------------
def verification_create(
    *,
    project_id: str,
    provider_id: str,
    checkpoint_id: str,
    parameters: dict[str, Any] | None = None,
    is_cloud_admin: bool = False,
    enqueue: bool = True,
) -> Verification:
    """Validate, then create an ``in_progress`` verification and its operation log; a worker runs it.

    Raises NotFound (provider, checkpoint), Conflict (checkpoint not available) or InvalidInput
    (non-empty parameters: there is no verify schema, Karbor stored those as ``fail``).
    """
    if parameters:
        raise InvalidInput.for_field("parameters", NO_PARAMETERS)
    provider = get_registry().get(provider_id)
    checkpoint = checkpoint_for_operation(
        project_id=project_id, provider_id=provider.id, checkpoint_id=checkpoint_id, is_cloud_admin=is_cloud_admin
    )
    if not checkpoint_resources(checkpoint.protection_plan, checkpoint.resource_graph):
        raise Conflict(
            f"Checkpoint {checkpoint_id} holds no resources to verify.",
            fields={"checkpoint_id": ["the checkpoint holds no resources"]},
        )
    with transaction.atomic():
        verification = Verification.objects.create(
            project_id=project_id,
            provider_id=provider.id,
            checkpoint_id=checkpoint.id,
            parameters={},
            status=IN_PROGRESS,
            resources_status={},
            resources_reason={},
        )
        OperationLog.objects.create(
            id=verification.id,
            project_id=project_id,
            operation_type="verify",
            checkpoint_id=checkpoint.id,
            plan_id=checkpoint.plan_id,
            provider_id=provider.id,
            status=IN_PROGRESS,
            extra_info={"verification_id": verification.id},
        )
        if enqueue:
            transaction.on_commit(lambda: verification_enqueue(verification_id=verification.id))
    return verification


def verification_enqueue(*, verification_id: str) -> None:
    """Send the run task; a broker that cannot be reached fails the verification and is a 503."""
    from kombu.exceptions import OperationalError as BrokerError

    from protection.tasks import verification_run_task

    try:
        verification_run_task.delay(verification_id)
    except (BrokerError, OSError) as exc:
        log.error("cannot enqueue verification %s: %s", verification_id, exc)
        verification_fail(verification_id=verification_id, reason=f"the verification could not be queued: {exc}")
        raise ServiceUnavailable("The task queue is unavailable; the verification was not started.") from exc


def verification_fail(*, verification_id: str, reason: str) -> bool:
    """Mark an ``in_progress`` verification ``fail`` with ``reason`` (guarded by status)."""
    now = timezone.now()
    with transaction.atomic():
        touched = Verification.objects.filter(pk=verification_id, status=IN_PROGRESS).update(
            status=FAIL, resources_reason={"*": reason}
        )
        if touched:
            OperationLog.objects.filter(pk=verification_id).update(status=FAIL, ended_at=now, error_info=reason)
    return touched == 1


# --- flow --------------------------------------------------------------------------------
def verification_claim(*, verification_id: str, worker: str) -> bool:
    now = timezone.now()
    claimed = Verification.objects.filter(pk=verification_id, status=IN_PROGRESS, worker="").update(
        worker=worker, heartbeat_at=now
    )
    if claimed:
        OperationLog.objects.filter(pk=verification_id).update(started_at=now)
    return claimed == 1


def _log_row(verification: Verification) -> OperationLog:
    row = OperationLog.objects.filter(pk=verification.id).first()
    if row is None:
        row = OperationLog.objects.create(
            id=verification.id,
            project_id=verification.project_id,
            operation_type="verify",
            checkpoint_id=verification.checkpoint_id,
            provider_id=verification.provider_id,
            status=IN_PROGRESS,
            started_at=timezone.now(),
            extra_info={"verification_id": verification.id},
        )
    return row


def _finish(verification_id: str, worker: str, statuses: dict, reasons: dict, details: dict) -> str:
    failed = not statuses or any(value != AVAILABLE for value in statuses.values())
    status = FAIL if failed else SUCCESS
    now = timezone.now()
    touched = Verification.objects.filter(pk=verification_id, status=IN_PROGRESS, worker=worker).update(
        status=status, resources_status=statuses, resources_reason=reasons, heartbeat_at=now
    )
    if not touched:
        log.warning("verification %s was finished by someone else while %s ran it", verification_id, worker)
        return Verification.all_objects.filter(pk=verification_id).values_list("status", flat=True).first() or status
    error_info = "; ".join(f"{key}: {reason}" for key, reason in reasons.items()) or None
    OperationLog.objects.filter(pk=verification_id).update(
        status=status,
        ended_at=now,
        error_info=error_info,
        extra_info={"verification_id": verification_id, "resources": details},
    )
    return status


def verification_run(
    *, verification_id: str, worker: str | None = None, on_progress: Callable[[ProgressRecorder], None] | None = None
) -> Verification | None:
    """Run one verification to its end (idempotent: a finished or foreign-held one is returned untouched)."""
    worker = worker or worker_name()
    if not verification_claim(verification_id=verification_id, worker=worker):
        log.info("verification %s is finished, gone or held by another worker; nothing to do", verification_id)
        return Verification.all_objects.filter(pk=verification_id).first()
    verification = Verification.objects.get(pk=verification_id)
    log_row = _log_row(verification)
    statuses: dict[str, str] = {}
    reasons: dict[str, str] = {}
    details: dict[str, dict] = {}
    try:
        provider = get_registry().get(verification.provider_id)
        bank = bank_for_provider(provider)
        manifest = bank.read_manifest(verification.checkpoint_id)
        meta = manifest.meta.get("checkpoint") or {}
        row = Checkpoint.all_objects.filter(pk=verification.checkpoint_id).first()
        plan = meta.get("protection_plan") or (row.protection_plan if row else None)
        graph = meta.get("resource_graph") if "resource_graph" in meta else (row.resource_graph if row else None)
        resources = checkpoint_resources(plan, graph)
        saved_raw = dict(getattr(row, "saved_info", None) or {})
        saved_raw.update(meta.get("saved_info") or {})
        stats = manifest.stats
        items_total = stats.files + stats.dirs + stats.symlinks + stats.streams
    except Exception as exc:  # noqa: BLE001 - whatever stops the flow must end the row with its reason
        log.exception("verification %s cannot start", verification_id)
        # "*": the reaper's key for a reason that concerns no single resource.
        _finish(verification_id, worker, {}, {"*": str(exc) or exc.__class__.__name__}, {})
        return Verification.all_objects.get(pk=verification_id)

    recorder = ProgressRecorder(log_row.id, bytes_total=stats.bytes, items_total=items_total, extra=on_progress)
    with FlowHeartbeat(model=Verification, pk=verification_id, status=IN_PROGRESS, worker=worker):
        for resource in resources:
            key = resource_key(resource.type, resource.id)
            plugin = provider.plugins.get(resource.type)
            try:
                if plugin is None:
                    raise PluginError(f"provider {provider.name} does not serve {resource.type}")
                context = VerifyContext(
                    project_id=verification.project_id,
                    resource=resource,
                    saved_info=saved_raw.get(key) or {},
                    bank=bank,
                    checkpoint_id=verification.checkpoint_id,
                    prefix=resource_prefix(resource.type, resource.id),
                    on_progress=recorder.on_progress,
                )
                details[key] = plugin.verify(context) or {}
                statuses[key] = AVAILABLE
            except PluginError as exc:
                statuses[key], reasons[key] = ERROR, str(exc)
            except Exception as exc:  # noqa: BLE001 - a plugin bug fails this resource, not the worker
                log.exception("verification %s: %s failed unexpectedly", verification_id, key)
                statuses[key], reasons[key] = ERROR, f"unexpected error: {exc.__class__.__name__}: {exc}"
            recorder.resource_done()
            Verification.objects.filter(pk=verification_id, status=IN_PROGRESS, worker=worker).update(
                resources_status=statuses, resources_reason=reasons, heartbeat_at=timezone.now()
            )
    status = _finish(verification_id, worker, statuses, reasons, details)
    log.info("verification %s finished: %s", verification_id, status)
    return Verification.all_objects.get(pk=verification_id)


# --- admin -------------------------------------------------------------------------------
@admin.action(description="Verify selected checkpoints (re-read every byte)")
def verification_admin_action(modeladmin, request, queryset) -> None:
    """For ``CheckpointAdmin.actions``: one verification per selected checkpoint, run by a worker."""
    started = 0
    for checkpoint in queryset:
        try:
            verification_create(
                project_id=checkpoint.project_id,
                provider_id=checkpoint.provider_id,
                checkpoint_id=checkpoint.pk,
                is_cloud_admin=True,
            )
            started += 1
        except KarborError as exc:
            modeladmin.message_user(request, f"{checkpoint}: {exc.message}", messages.ERROR)
    if started:
        modeladmin.message_user(request, f"{started} verification(s) started.", messages.SUCCESS)
