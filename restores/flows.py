"""The restore flow: bring every resource of a checkpoint back through its plugin.

``restore_run`` is what the Celery task, ``manage.py restore`` and the admin action call.

1. Claim: ``UPDATE restores SET worker=<me> WHERE id=… AND status='in_progress' AND worker=''``
   must touch one row. A re-delivered task (``acks_late``) for a restore that finished, or that
   another worker holds, returns quietly; a worker that died mid-run leaves a stale
   ``heartbeat_at`` and the reaper turns the row into ``fail``.
2. Read the checkpoint's manifest from the provider's bank (``bank_for_provider``; manifest id =
   checkpoint id, meta ``{"checkpoint": {...}}``), its resources (plan snapshot + resource graph)
   and saved info.
3. For each resource: ``plugin.restore(RestoreContext(...))`` under ``resource_prefix``; its
   ``resources_status`` entry goes ``restoring`` → ``available`` | ``error`` (reason in
   ``resources_reason``). A heartbeat thread refreshes ``heartbeat_at`` meanwhile, and
   progress (bytes/items) goes to the OperationLog row, throttled.
4. Finish: ``success`` when every resource is ``available``, else ``fail`` — guarded by status
   and worker, so a row the reaper already failed stays failed.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from django.utils import timezone

from protection.banks import bank_for_provider, resource_prefix
from protection.models import Checkpoint, OperationLog
from providers.plugins.base import PluginError, RestoreContext
from providers.registry import get_registry
from restores.models import Restore, RestoreStatus
from protection.heartbeats import FlowHeartbeat
from restores.progress import IN_PROGRESS, ProgressRecorder, worker_name
from restores.selectors import checkpoint_resources, merged_parameters, resource_key
from restores.services import RESTORING, saved_infos_by_id

log = logging.getLogger(__name__)

AVAILABLE = "available"
ERROR = "error"


def restore_claim(*, restore_id: str, worker: str) -> bool:
    """Take an ``in_progress`` restore nobody runs yet; False when it finished or another worker has it."""
    now = timezone.now()
    claimed = Restore.objects.filter(pk=restore_id, status=RestoreStatus.IN_PROGRESS, worker="").update(
        worker=worker, heartbeat_at=now
    )
    if claimed:
        OperationLog.objects.filter(restore_id=restore_id, operation_type="restore").update(started_at=now)
    return claimed == 1


def _log_row(restore: Restore) -> OperationLog:
    row = OperationLog.objects.filter(restore_id=restore.id, operation_type="restore").first()
    if row is None:  # rows made before the log existed, or a log row purged by hand
        row = OperationLog.objects.create(
            project_id=restore.project_id,
            operation_type="restore",
            checkpoint_id=restore.checkpoint_id,
            provider_id=restore.provider_id,
            restore_id=restore.id,
            status=RestoreStatus.IN_PROGRESS,
            started_at=timezone.now(),
        )
    return row


def _save_resources(restore_id: str, worker: str, statuses: dict, reasons: dict) -> None:
    Restore.objects.filter(pk=restore_id, status=RestoreStatus.IN_PROGRESS, worker=worker).update(
        resources_status=statuses, resources_reason=reasons, heartbeat_at=timezone.now()
    )


def _finish(restore_id: str, log_id: str, worker: str, statuses: dict, reasons: dict, details: dict) -> str:
    failed = not statuses or any(value != AVAILABLE for value in statuses.values())
    status = RestoreStatus.FAIL if failed else RestoreStatus.SUCCESS
    now = timezone.now()
    touched = Restore.objects.filter(pk=restore_id, status=RestoreStatus.IN_PROGRESS, worker=worker).update(
        status=status, resources_status=statuses, resources_reason=reasons, heartbeat_at=now
    )
    if not touched:
        log.warning("restore %s was finished by someone else (the reaper?) while %s ran it", restore_id, worker)
        return Restore.all_objects.filter(pk=restore_id).values_list("status", flat=True).first() or status
    error_info = "; ".join(f"{key}: {reason}" for key, reason in reasons.items()) or None
    OperationLog.objects.filter(pk=log_id).update(
        status=status, ended_at=now, error_info=error_info, extra_info={"resources": details} if details else None
    )
    return status


def restore_run(
    *, restore_id: str, worker: str | None = None, on_progress: Callable[[ProgressRecorder], None] | None = None
) -> Restore | None:
    """Run one restore to its end (idempotent: a finished or foreign-held restore is returned untouched)."""
    worker = worker or worker_name()
    if not restore_claim(restore_id=restore_id, worker=worker):
        log.info("restore %s is finished, gone or held by another worker; nothing to do", restore_id)
        return Restore.all_objects.filter(pk=restore_id).first()
    restore = Restore.objects.get(pk=restore_id)
    log_row = _log_row(restore)
    statuses: dict[str, str] = dict(restore.resources_status or {})
    reasons: dict[str, str] = {}
    details: dict[str, dict] = {}
    try:
        provider = get_registry().get(restore.provider_id)
        bank = bank_for_provider(provider)
        manifest = bank.read_manifest(restore.checkpoint_id)
        meta = manifest.meta.get("checkpoint") or {}
        row = Checkpoint.all_objects.filter(pk=restore.checkpoint_id).first()
        plan = meta.get("protection_plan") or (row.protection_plan if row else None)
        graph = meta.get("resource_graph") if "resource_graph" in meta else (row.resource_graph if row else None)
        resources = checkpoint_resources(plan, graph)
        saved = saved_infos_by_id(row) if row is not None else {}
        for key, value in (meta.get("saved_info") or {}).items():
            if isinstance(value, dict):
                saved.setdefault(key.partition("#")[2] or key, value)
        protected = meta.get("resources_status") or (row.resources_status if row else {}) or {}
        stats = manifest.stats
        items_total = stats.files + stats.dirs + stats.symlinks + stats.streams
    except Exception as exc:  # noqa: BLE001 - whatever stops the flow must end the row with its reason
        log.exception("restore %s cannot start", restore_id)
        reason = str(exc) or exc.__class__.__name__
        for key in statuses:
            statuses[key] = ERROR
            reasons[key] = reason
        if not statuses:
            reasons["*"] = reason  # the reaper's key for a reason that concerns no single resource
        _finish(restore_id, log_row.id, worker, statuses, reasons, details)
        return Restore.all_objects.get(pk=restore_id)

    statuses = {resource_key(r.type, r.id): RESTORING for r in resources}
    _save_resources(restore_id, worker, statuses, reasons)
    recorder = ProgressRecorder(log_row.id, bytes_total=stats.bytes, items_total=items_total, extra=on_progress)
    with FlowHeartbeat(model=Restore, pk=restore_id, status=IN_PROGRESS, worker=worker):
        for resource in resources:
            key = resource_key(resource.type, resource.id)
            plugin = provider.plugins.get(resource.type)
            try:
                if plugin is None:
                    raise PluginError(f"provider {provider.name} does not serve {resource.type}")
                if protected.get(key, AVAILABLE) != AVAILABLE:
                    raise PluginError(f"the resource was not protected in this checkpoint ({protected.get(key)})")
                context = RestoreContext(
                    project_id=restore.project_id,
                    resource=resource,
                    saved_info=saved.get(resource.id, {}),
                    parameters=merged_parameters(restore.parameters or {}, resource.type, resource.id),
                    bank=bank,
                    checkpoint_id=restore.checkpoint_id,
                    prefix=resource_prefix(resource.type, resource.id),
                    target=restore.restore_target or None,
                    on_progress=recorder.on_progress,
                )
                details[key] = plugin.restore(context) or {}
                statuses[key] = AVAILABLE
            except PluginError as exc:
                statuses[key], reasons[key] = ERROR, str(exc)
            except Exception as exc:  # noqa: BLE001 - a plugin bug fails this resource, not the worker
                log.exception("restore %s: %s failed unexpectedly", restore_id, key)
                statuses[key], reasons[key] = ERROR, f"unexpected error: {exc.__class__.__name__}: {exc}"
            recorder.resource_done()
            _save_resources(restore_id, worker, statuses, reasons)
    restore_status = _finish(restore_id, log_row.id, worker, statuses, reasons, details)
    log.info("restore %s finished: %s", restore_id, restore_status)
    return Restore.all_objects.get(pk=restore_id)
