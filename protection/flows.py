"""The protect and delete flows of a checkpoint: what a Celery task (or ``manage.py protect``) runs.

Both flows start with a guarded claim (``UPDATE … WHERE status=<running> AND worker=''``
touching exactly one row), so a re-delivered task, or a second worker, returns quietly.
Slow work (plugins, the bank) happens outside any transaction; every status change after
the claim is again conditional on ``worker = <us>``, so a flow the reaper already failed
(because its heartbeat went stale) cannot overwrite the reaper's verdict.

The bank is the truth: the manifest is committed last with ``meta = {"checkpoint": …}``
(``checkpoint_meta``), so ``rebuild_catalog`` can recreate the row from the bank alone.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils import timezone

from karbor_site.api.exceptions import NotFound
from protection.bank import BankError, BankLockedError, Progress
from protection.banks import bank_for_provider, resource_prefix
from protection.heartbeats import FlowHeartbeat
from protection.models import Checkpoint, CheckpointStatus, OperationLog
from providers.config import ProviderConfig
from providers.plugins.base import Instance, PluginError, ProtectContext
from providers.registry import get_registry

log = logging.getLogger(__name__)

PROTECT = "protect"
DELETE = "delete"
RESOURCE_AVAILABLE = "available"
RESOURCE_ERROR = "error"
RESOURCE_PROTECTING = "protecting"


def default_worker_name() -> str:
    """``host:pid`` of this process; the reaper names it when the process dies."""
    return f"{socket.gethostname()}:{os.getpid()}"


def resource_key(resource_type: str, resource_id: str) -> str:
    """The key of ``resources_status`` / ``resources_reason`` / ``saved_info``: ``"<type>#<id>"``."""
    return f"{resource_type}#{resource_id}"


def checkpoint_meta(checkpoint: Checkpoint) -> dict[str, Any]:
    """The catalog fields stored in the manifest's ``meta["checkpoint"]`` (what rebuild_catalog reads)."""
    return {
        "id": checkpoint.id,
        "project_id": checkpoint.project_id,
        "provider_id": checkpoint.provider_id,
        "plan_id": checkpoint.plan_id,
        "status": CheckpointStatus.AVAILABLE.value,
        "protection_plan": checkpoint.protection_plan,
        "resource_graph": checkpoint.resource_graph,
        "resources_status": checkpoint.resources_status,
        "resources_reason": checkpoint.resources_reason,
        "saved_info": checkpoint.saved_info,
        "extra_info": checkpoint.extra_info,
        "created_at": checkpoint.created_at.isoformat() if checkpoint.created_at else None,
        "bytes_done": checkpoint.bytes_done,
        "items_done": checkpoint.items_done,
    }


def plan_parameters_for(parameters: dict[str, Any], resource_type: str, resource_id: str) -> dict[str, Any]:
    """Type-level parameters, overridden by the ``type#id`` entry (Karbor's merge)."""
    merged = dict(parameters.get(resource_type) or {})
    merged.update(parameters.get(resource_key(resource_type, resource_id)) or {})
    return merged


# --- resource graph -----------------------------------------------------------------------
def ordered_resources(
    *, provider: ProviderConfig, project_id: str, resources: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """The plan's resources with every resource after the ones it contains, and parent → children keys.

    A child is a plan resource that a plugin lists among ``dependencies`` of another plan
    resource (the registry knows which types can contain which). Karbor protects children
    first (a server after its volumes); for types without dependents the plan order is kept.
    """
    registry = get_registry()
    keys = [resource_key(r["type"], r["id"]) for r in resources]
    in_plan = set(keys)
    children: dict[str, list[str]] = {key: [] for key in keys}
    for resource, key in zip(resources, keys):
        for child_type in registry.dependent_types(resource["type"]):
            plugin = provider.plugins.get(child_type)
            if plugin is None:
                continue
            parent = Instance(id=resource["id"], type=resource["type"], name=resource.get("name", ""),
                              extra_info=resource.get("extra_info"))
            try:
                found = plugin.dependencies(project_id=project_id, instance=parent)
            except Exception:  # noqa: BLE001 - a failing lookup only loses ordering, never the checkpoint
                log.warning("dependencies of %s could not be listed", key, exc_info=True)
                continue
            for dependent in found:
                child_key = resource_key(dependent.type, dependent.id)
                if child_key in in_plan and child_key != key and child_key not in children[key]:
                    children[key].append(child_key)
    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(key: str) -> None:
        if key in ordered or key in visiting:
            return
        visiting.add(key)
        for child in children[key]:
            visit(child)
        visiting.discard(key)
        ordered.append(key)

    for key in keys:
        visit(key)
    by_key = dict(zip(keys, resources))
    return [by_key[key] for key in ordered], {key: value for key, value in children.items() if value}


def resource_graph_for(resources: list[dict[str, Any]], children: dict[str, list[str]]) -> list:
    """Karbor's packed graph: ``[{"0x0": [type, id, name, extra_info], …}, [["0x1", ["0x0"]], …]]``."""
    ids = {resource_key(r["type"], r["id"]): hex(index) for index, r in enumerate(resources)}
    nodes = {
        ids[resource_key(r["type"], r["id"])]: [r["type"], r["id"], r.get("name", ""), r.get("extra_info")]
        for r in resources
    }
    adjacency = [[ids[parent], [ids[c] for c in kids]] for parent, kids in children.items() if parent in ids]
    return [nodes, adjacency]


# --- progress and heartbeats ----------------------------------------------------------
@dataclass
class ProgressRecorder:
    """Accumulates progress over the resources and writes it, throttled, to the row and its log."""

    checkpoint_id: str
    log_id: str | None
    worker: str
    interval: float
    echo: Callable[[Progress], None] | None = None
    bytes_base: int = 0
    items_base: int = 0
    bytes_total_base: int = 0
    items_total_base: int = 0
    current: Progress = field(default_factory=lambda: Progress(0, None, 0, None))
    _last_write: float = 0.0

    def on_progress(self, progress: Progress) -> None:
        self.current = progress
        total = self.totals()
        if self.echo is not None:
            self.echo(total)
        now = time.monotonic()
        if now - self._last_write >= self.interval:
            self._last_write = now
            self.write(total)

    def resource_done(self) -> None:
        self.bytes_base += self.current.bytes_done
        self.items_base += self.current.items_done
        self.bytes_total_base += self.current.bytes_total or self.current.bytes_done
        self.items_total_base += self.current.items_total or self.current.items_done
        self.current = Progress(0, None, 0, None)

    def totals(self) -> Progress:
        current = self.current
        bytes_total = self.bytes_total_base + current.bytes_total if current.bytes_total is not None else None
        items_total = self.items_total_base + current.items_total if current.items_total is not None else None
        return Progress(self.bytes_base + current.bytes_done, bytes_total, self.items_base + current.items_done, items_total)

    def write(self, progress: Progress) -> None:
        values = {
            "bytes_done": progress.bytes_done,
            "bytes_total": progress.bytes_total,
            "items_done": progress.items_done,
            "items_total": progress.items_total,
        }
        Checkpoint.all_objects.filter(pk=self.checkpoint_id, worker=self.worker).update(
            **values, heartbeat_at=timezone.now(), updated_at=timezone.now()
        )
        if self.log_id:
            OperationLog.all_objects.filter(pk=self.log_id, ended_at__isnull=True).update(**values)


# --- claiming and finishing -------------------------------------------------------------
def _claim(checkpoint_id: str, status: str, worker: str) -> Checkpoint | None:
    """Take the row for this worker; None when it is gone, finished or already taken."""
    now = timezone.now()
    claimed = Checkpoint.all_objects.filter(pk=checkpoint_id, status=status, worker="").update(
        worker=worker, heartbeat_at=now, updated_at=now
    )
    if claimed != 1:
        return None
    return Checkpoint.all_objects.get(pk=checkpoint_id)


def _open_log(checkpoint: Checkpoint, operation_type: str) -> OperationLog:
    """The flow's operation log (created with the request); a missing one is created now."""
    entry = (
        OperationLog.all_objects.filter(checkpoint_id=checkpoint.id, operation_type=operation_type, ended_at__isnull=True)
        .order_by("-created_at")
        .first()
    )
    now = timezone.now()
    if entry is None:
        entry = OperationLog.objects.create(
            project_id=checkpoint.project_id,
            operation_type=operation_type,
            checkpoint_id=checkpoint.id,
            plan_id=checkpoint.plan_id,
            provider_id=checkpoint.provider_id,
            status=checkpoint.status,
            started_at=now,
            extra_info=checkpoint.extra_info or None,
        )
    elif entry.started_at is None:
        OperationLog.all_objects.filter(pk=entry.pk).update(started_at=now)
    return entry


def _finish(
    checkpoint: Checkpoint, *, running: str, status: str, worker: str, log_entry: OperationLog | None,
    reason: str = "", extra: dict[str, Any] | None = None, soft_delete: bool = False,
) -> bool:
    """Guarded final update of the row and its log; False when the row was no longer ours."""
    now = timezone.now()
    values: dict[str, Any] = {"status": status, "status_reason": reason, "heartbeat_at": now, "updated_at": now}
    values.update(extra or {})
    if soft_delete:
        values.update(deleted=True, deleted_at=now)
    done = Checkpoint.all_objects.filter(pk=checkpoint.id, status=running, worker=worker).update(**values)
    if done != 1:
        return False
    if log_entry is not None:
        log_values: dict[str, Any] = {"status": status, "ended_at": now, "error_info": reason or None}
        for name in ("bytes_done", "bytes_total", "items_done", "items_total"):
            if name in values:
                log_values[name] = values[name]
        OperationLog.all_objects.filter(pk=log_entry.pk).update(**log_values)
    return True


def _parent_checkpoint_id(checkpoint: Checkpoint, bank) -> str | None:
    """The newest ``available`` checkpoint of the same plan in this provider whose manifest exists."""
    candidates = (
        Checkpoint.objects.filter(
            plan_id=checkpoint.plan_id, provider_id=checkpoint.provider_id, status=CheckpointStatus.AVAILABLE
        )
        .exclude(pk=checkpoint.pk)
        .order_by("-created_at")
        .values_list("pk", flat=True)[:5]
    )
    for candidate in candidates:
        try:
            if bank.manifest_exists(candidate):
                return candidate
        except BankError:
            return None
    return None


# --- protect -------------------------------------------------------------------------------
@dataclass
class ResourceOutcome:
    status: dict[str, str] = field(default_factory=dict)
    reason: dict[str, str] = field(default_factory=dict)
    saved_info: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [key for key, value in self.status.items() if value != RESOURCE_AVAILABLE]


def checkpoint_protect_run(
    *, checkpoint_id: str, worker: str | None = None, echo: Callable[[Progress], None] | None = None
) -> Checkpoint | None:
    """Run the protect flow of a ``protecting`` checkpoint; return the final row.

    Returns the row unchanged (or None when it does not exist) when it is not ``protecting``
    or another worker already took it: a re-delivered task is a no-op.
    """
    worker = worker or default_worker_name()
    checkpoint = _claim(checkpoint_id, CheckpointStatus.PROTECTING, worker)
    if checkpoint is None:
        return Checkpoint.all_objects.filter(pk=checkpoint_id).first()
    log_entry = _open_log(checkpoint, PROTECT)
    recorder = ProgressRecorder(
        checkpoint_id=checkpoint.id, log_id=log_entry.pk, worker=worker,
        interval=settings.KARBOR_PROGRESS_INTERVAL, echo=echo,
    )
    try:
        with FlowHeartbeat(model=Checkpoint, pk=checkpoint.id, status=CheckpointStatus.PROTECTING, worker=worker):
            _protect(checkpoint, worker=worker, log_entry=log_entry, recorder=recorder)
    except Exception as exc:  # noqa: BLE001 - whatever broke, the row must not stay "protecting"
        log.exception("protect of checkpoint %s failed", checkpoint.id)
        reason = f"Protect failed: {type(exc).__name__}: {exc}"
        current = Checkpoint.all_objects.filter(pk=checkpoint.id).values("resources_status", "resources_reason").first()
        statuses, reasons = unfinished_resources_failed(current or {}, reason)
        _finish(checkpoint, running=CheckpointStatus.PROTECTING, status=CheckpointStatus.ERROR, worker=worker,
                log_entry=log_entry, reason=reason, extra={"resources_status": statuses, "resources_reason": reasons})
    return Checkpoint.all_objects.get(pk=checkpoint.id)


def unfinished_resources_failed(row: dict[str, Any], reason: str) -> tuple[dict[str, str], dict[str, str]]:
    """``resources_status``/``resources_reason`` with every resource still ``protecting`` set to ``error``."""
    statuses = dict(row.get("resources_status") or {})
    reasons = dict(row.get("resources_reason") or {})
    for key, value in statuses.items():
        if value == RESOURCE_PROTECTING:
            statuses[key] = RESOURCE_ERROR
            reasons.setdefault(key, reason)
    return statuses, reasons


def _protect(checkpoint: Checkpoint, *, worker: str, log_entry: OperationLog, recorder: ProgressRecorder) -> None:
    running = CheckpointStatus.PROTECTING

    def fail(reason: str, outcome: ResourceOutcome | None = None) -> None:
        extra = {}
        if outcome is not None:
            extra = {"resources_status": outcome.status, "resources_reason": outcome.reason, "saved_info": outcome.saved_info}
        _finish(checkpoint, running=running, status=CheckpointStatus.ERROR, worker=worker, log_entry=log_entry,
                reason=reason, extra=extra)

    provider = get_registry().find(checkpoint.provider_id)
    if provider is None:
        fail(f"Provider {checkpoint.provider_id} is no longer configured.")
        return
    plan = checkpoint.protection_plan or {}
    resources = list(plan.get("resources") or [])
    parameters = plan.get("parameters") or {}
    ordered, children = ordered_resources(provider=provider, project_id=checkpoint.project_id, resources=resources)
    graph = resource_graph_for(ordered, children)
    outcome = ResourceOutcome(status={resource_key(r["type"], r["id"]): RESOURCE_PROTECTING for r in ordered})
    Checkpoint.all_objects.filter(pk=checkpoint.pk, worker=worker).update(
        resource_graph=graph, resources_status=dict(outcome.status)
    )
    checkpoint.resource_graph = graph
    try:
        bank = bank_for_provider(provider)
        parent_id = _parent_checkpoint_id(checkpoint, bank)
        writer = bank.writer(manifest_id=checkpoint.id, parent_id=parent_id)
    except BankError as exc:
        fail(f"The bank of provider {provider.name} cannot be opened: {exc}")
        return
    with writer:
        for resource in ordered:
            key = resource_key(resource["type"], resource["id"])
            try:
                outcome.saved_info[key] = _protect_resource(
                    provider=provider, checkpoint=checkpoint, resource=resource, parameters=parameters,
                    writer=writer, recorder=recorder,
                )
                outcome.status[key] = RESOURCE_AVAILABLE
            except (PluginError, NotFound, BankError, OSError) as exc:
                if isinstance(exc, BankError):
                    message = f"bank error: {exc}"
                else:
                    message = str(getattr(exc, "message", None) or exc)
                outcome.status[key] = RESOURCE_ERROR
                outcome.reason[key] = message
                log.warning("checkpoint %s: %s failed: %s", checkpoint.id, key, message)
            recorder.resource_done()
            Checkpoint.all_objects.filter(pk=checkpoint.pk, worker=worker).update(
                resources_status=dict(outcome.status), resources_reason=dict(outcome.reason)
            )
        if outcome.failed:
            writer.abort()
            failed = ", ".join(f"{key}: {outcome.reason.get(key, 'failed')}" for key in outcome.failed)
            fail(f"{len(outcome.failed)} of {len(ordered)} resource(s) failed: {failed}", outcome)
            return
        totals = recorder.totals()
        checkpoint.resources_status, checkpoint.resources_reason = outcome.status, outcome.reason
        checkpoint.saved_info = outcome.saved_info
        checkpoint.bytes_done, checkpoint.items_done = totals.bytes_done, totals.items_done
        # Still ours? (A flow the reaper failed must not leave a manifest behind.)
        if Checkpoint.all_objects.filter(pk=checkpoint.pk, status=running, worker=worker).update(
            heartbeat_at=timezone.now()
        ) != 1:
            writer.abort()
            return
        writer.commit(meta={"checkpoint": checkpoint_meta(checkpoint)})
    finished = _finish(
        checkpoint, running=running, status=CheckpointStatus.AVAILABLE, worker=worker, log_entry=log_entry,
        extra={
            "resources_status": outcome.status, "resources_reason": outcome.reason, "saved_info": outcome.saved_info,
            "bytes_done": totals.bytes_done, "items_done": totals.items_done,
            "bytes_total": totals.bytes_done, "items_total": totals.items_done,
        },
    )
    if not finished:
        # The reaper failed the row between our check and the commit: keep bank and catalog in step.
        try:
            bank.delete_manifest(checkpoint.id)
        except BankError:
            log.warning("checkpoint %s: manifest of a reaped flow could not be removed", checkpoint.id, exc_info=True)


def _protect_resource(
    *, provider: ProviderConfig, checkpoint: Checkpoint, resource: dict[str, Any], parameters: dict[str, Any],
    writer, recorder: ProgressRecorder,
) -> dict[str, Any]:
    resource_type, resource_id = resource["type"], resource["id"]
    plugin = provider.plugins.get(resource_type)
    if plugin is None:
        raise PluginError(f"provider {provider.name} no longer protects {resource_type}")
    merged = plan_parameters_for(parameters, resource_type, resource_id)
    try:
        instance = plugin.show_instance(project_id=checkpoint.project_id, instance_id=resource_id, parameters=merged)
    except NotFound:
        raise PluginError(
            f"{resource_type} {resource.get('name') or resource_id} is no longer available "
            "(the operator removed or hid its source)"
        ) from None
    saved = plugin.protect(
        ProtectContext(
            project_id=checkpoint.project_id,
            resource=instance,
            parameters=merged,
            writer=writer,
            prefix=resource_prefix(resource_type, resource_id),
            on_progress=recorder.on_progress,
        )
    )
    return saved or {}


# --- delete --------------------------------------------------------------------------------
def checkpoint_delete_run(*, checkpoint_id: str, worker: str | None = None) -> Checkpoint | None:
    """``deleting`` → delete the manifest → GC the bank → ``deleted`` (soft-deleted row kept).

    GC runs with ``KARBOR_BANK_GC_GRACE_SECONDS``; when another GC holds the bank lock the
    space is reclaimed by the next run, and the checkpoint is ``deleted`` all the same.
    """
    worker = worker or default_worker_name()
    checkpoint = _claim(checkpoint_id, CheckpointStatus.DELETING, worker)
    if checkpoint is None:
        return Checkpoint.all_objects.filter(pk=checkpoint_id).first()
    log_entry = _open_log(checkpoint, DELETE)
    running = CheckpointStatus.DELETING
    try:
        with FlowHeartbeat(model=Checkpoint, pk=checkpoint.id, status=running, worker=worker):
            provider = get_registry().find(checkpoint.provider_id)
            if provider is None:
                raise BankError(f"provider {checkpoint.provider_id} is no longer configured")
            bank = bank_for_provider(provider)
            _plugins_delete(provider, checkpoint)
            if bank.manifest_exists(checkpoint.id):
                bank.delete_manifest(checkpoint.id)
            try:
                bank.gc(grace_seconds=settings.KARBOR_BANK_GC_GRACE_SECONDS)
            except BankLockedError as exc:
                log.info("checkpoint %s deleted; GC left for the next run: %s", checkpoint.id, exc)
            except BankError:
                log.warning("checkpoint %s deleted; GC failed (run bank_check)", checkpoint.id, exc_info=True)
    except Exception as exc:  # noqa: BLE001 - whatever broke, the row must not stay "deleting"
        log.exception("delete of checkpoint %s failed", checkpoint.id)
        _finish(checkpoint, running=running, status=CheckpointStatus.ERROR, worker=worker, log_entry=log_entry,
                reason=f"Delete failed: {type(exc).__name__}: {exc}")
        return Checkpoint.all_objects.get(pk=checkpoint.id)
    _finish(checkpoint, running=running, status=CheckpointStatus.DELETED, worker=worker, log_entry=log_entry,
            soft_delete=True)
    return Checkpoint.all_objects.get(pk=checkpoint.id)


def _plugins_delete(provider: ProviderConfig, checkpoint: Checkpoint) -> None:
    """Let each plugin remove what it stored outside the bank (nothing, for directories)."""
    for resource in (checkpoint.protection_plan or {}).get("resources") or []:
        plugin = provider.plugins.get(resource["type"])
        if plugin is None:
            continue
        key = resource_key(resource["type"], resource["id"])
        instance = Instance(id=resource["id"], type=resource["type"], name=resource.get("name", ""),
                            extra_info=resource.get("extra_info"))
        plugin.delete(project_id=checkpoint.project_id, resource=instance,
                      saved_info=(checkpoint.saved_info or {}).get(key) or {})
