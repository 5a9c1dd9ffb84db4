"""The protect and delete operations of a checkpoint, declared as kinds of the runner.

One protect per plan: a partial unique index allows one ``protecting`` checkpoint per plan, so
the guarded claim (``status=protecting AND worker=""``) can only ever succeed for that one row.

``operations.runner`` claims the row, heartbeats, loops over the resources and finishes it
(guarded by status and worker, so a flow the reaper already failed cannot overwrite the
reaper's verdict); this module says what protecting and deleting one resource means.

The bank is the truth: the manifest is committed last with ``meta = {"checkpoint": …}``
(``checkpoint_meta``), so ``rebuild_catalog`` can recreate the row from the bank alone, and
the reaper finishes a ``protecting`` row whose manifest exists (a worker that died between
the bank commit and the finish) as ``available`` from that meta instead of failing it.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.utils import timezone

from karbor_site.errors import NotFound
from operations.kinds import Kind
from operations.runner import OperationFailed, Run, operation_run, register
from protection.bank import BankError, Progress
from protection.banks import bank_for_provider, resource_prefix
from protection.gc import bank_gc_request
from protection.models import Checkpoint, CheckpointStatus
from providers.config import ProviderConfig
from providers.plugins.base import Instance, PluginError, ProtectContext
from providers.registry import get_registry

log = logging.getLogger(__name__)

PROTECT = "protect"
DELETE = "delete"
RESOURCE_PROTECTING = "protecting"
RESOURCE_DELETING = "deleting"


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
        "copy_of": checkpoint.copy_of,
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


# --- protect -------------------------------------------------------------------------------
def _provider(checkpoint: Checkpoint) -> ProviderConfig:
    provider = get_registry().find(checkpoint.provider_id)
    if provider is None:
        raise OperationFailed(f"Provider {checkpoint.provider_id} is no longer configured.")
    return provider


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


def _protect_prepare(run: Run) -> list[tuple[str, dict[str, Any]]]:
    checkpoint: Checkpoint = run.row
    provider = _provider(checkpoint)
    plan = checkpoint.protection_plan or {}
    ordered, children = ordered_resources(
        provider=provider, project_id=checkpoint.project_id, resources=list(plan.get("resources") or [])
    )
    checkpoint.resource_graph = resource_graph_for(ordered, children)
    Checkpoint.all_objects.filter(pk=checkpoint.pk, worker=run.worker).update(resource_graph=checkpoint.resource_graph)
    try:
        bank = bank_for_provider(provider)
        writer = bank.writer(manifest_id=checkpoint.id, parent_id=_parent_checkpoint_id(checkpoint, bank))
    except BankError as exc:
        raise OperationFailed(f"The bank of provider {provider.name} cannot be opened: {exc}") from exc
    run.state.update(provider=provider, bank=bank, writer=writer, parameters=plan.get("parameters") or {})
    return [(resource_key(r["type"], r["id"]), r) for r in ordered]


def _protect_step(run: Run, resource: dict[str, Any]) -> dict[str, Any]:
    provider, checkpoint = run.state["provider"], run.row
    resource_type, resource_id = resource["type"], resource["id"]
    plugin = provider.plugins.get(resource_type)
    if plugin is None:
        raise PluginError(f"provider {provider.name} no longer protects {resource_type}")
    merged = plan_parameters_for(run.state["parameters"], resource_type, resource_id)
    try:
        instance = plugin.show_instance(project_id=checkpoint.project_id, instance_id=resource_id, parameters=merged)
    except NotFound:
        raise PluginError(
            f"{resource_type} {resource.get('name') or resource_id} is no longer available "
            "(the operator removed or hid its source)"
        ) from None
    try:
        saved = plugin.protect(
            ProtectContext(
                project_id=checkpoint.project_id, resource=instance, parameters=merged, writer=run.state["writer"],
                prefix=resource_prefix(resource_type, resource_id), on_progress=run.progress.on_progress,
            )
        )
    except BankError as exc:
        raise PluginError(f"bank error: {exc}") from exc
    return saved or {}


def _protect_commit(run: Run) -> dict[str, Any]:
    """Write the manifest — the commit point — with the catalog fields in its meta."""
    checkpoint, writer, totals = run.row, run.state["writer"], run.progress.totals()
    checkpoint.resources_status, checkpoint.resources_reason = dict(run.statuses), dict(run.reasons)
    checkpoint.saved_info = run.details
    checkpoint.bytes_done, checkpoint.items_done = totals.bytes_done, totals.items_done
    values = {
        "saved_info": run.details, "bytes_done": totals.bytes_done, "items_done": totals.items_done,
        "bytes_total": totals.bytes_done, "items_total": totals.items_done,
    }
    # Still ours? A flow the reaper failed must not leave a manifest behind.
    if not run.still_ours():
        writer.abort()
        return values
    writer.commit(meta={"checkpoint": checkpoint_meta(checkpoint)})
    run.state["committed"] = True
    return values


def _protect_undo(run: Run) -> None:
    """The reaper failed the row between our check and the commit: keep bank and catalog in step."""
    if not run.state.get("committed"):
        return
    try:
        run.state["bank"].delete_manifest(run.row.pk)
    except BankError:
        log.warning("checkpoint %s: manifest of a reaped flow could not be removed", run.row.pk, exc_info=True)


def _protect_cleanup(run: Run) -> None:
    writer = run.state.get("writer")
    if writer is not None:
        writer.abort()  # a no-op once committed


def checkpoint_from_manifest(checkpoint: Checkpoint) -> dict[str, Any] | None:
    """The catalog values of a checkpoint whose manifest the bank holds, else None.

    What the reaper and ``rebuild_catalog`` use to finish a row whose worker died after
    the bank commit: the manifest is complete (it is written last and atomically).
    """
    provider = get_registry().find(checkpoint.provider_id)
    if provider is None:
        return None
    try:
        bank = bank_for_provider(provider)
        if not bank.manifest_exists(checkpoint.pk):
            return None
        meta = (bank.read_manifest(checkpoint.pk).meta or {}).get("checkpoint")
    except BankError:
        log.warning("checkpoint %s: its manifest could not be read", checkpoint.pk, exc_info=True)
        return None
    if not isinstance(meta, dict) or meta.get("id") != checkpoint.pk:
        return None
    values = {name: meta.get(name) or {} for name in ("resources_status", "resources_reason", "saved_info")}
    values.update(
        resource_graph=meta.get("resource_graph"), status_reason="",
        bytes_done=meta.get("bytes_done") or 0, items_done=meta.get("items_done") or 0,
        bytes_total=meta.get("bytes_done") or 0, items_total=meta.get("items_done") or 0,
    )
    return values


PROTECT_KIND = register(Kind(
    name="checkpoint_protect", label="Protect", model=Checkpoint, operation_type=PROTECT,
    task_name="karbor.protection.checkpoint_protect",
    running=CheckpointStatus.PROTECTING, success=CheckpointStatus.AVAILABLE, failure=CheckpointStatus.ERROR,
    resource_running=RESOURCE_PROTECTING, prepare=_protect_prepare, step=_protect_step, commit=_protect_commit,
    undo=_protect_undo, cleanup=_protect_cleanup, reconcile=checkpoint_from_manifest,
))


def checkpoint_protect_run(
    *, checkpoint_id: str, worker: str | None = None, echo: Callable[[Progress], None] | None = None
) -> Checkpoint | None:
    """Run the protect flow of a ``protecting`` checkpoint; return the final row (a re-delivered task is a no-op)."""
    return operation_run(kind=PROTECT_KIND, row_id=checkpoint_id, worker=worker, echo=echo)


# --- delete --------------------------------------------------------------------------------
def _delete_prepare(run: Run) -> list[tuple[str, Instance]]:
    provider = _provider(run.row)
    run.state.update(provider=provider, bank=bank_for_provider(provider))
    return [
        (resource_key(r["type"], r["id"]),
         Instance(id=r["id"], type=r["type"], name=r.get("name", ""), extra_info=r.get("extra_info")))
        for r in (run.row.protection_plan or {}).get("resources") or []
    ]


def _delete_step(run: Run, instance: Instance) -> None:
    """Let the plugin remove what it stored outside the bank (nothing, for directories)."""
    plugin = run.state["provider"].plugins.get(instance.type)
    if plugin is not None:
        saved = (run.row.saved_info or {}).get(resource_key(instance.type, instance.id)) or {}
        plugin.delete(project_id=run.row.project_id, resource=instance, saved_info=saved)


def _delete_commit(run: Run) -> dict[str, Any]:
    """Remove the manifest; its data goes with the provider's next (batched) GC."""
    bank = run.state["bank"]
    if bank.manifest_exists(run.row.pk):
        bank.delete_manifest(run.row.pk)
    bank_gc_request(provider_id=run.row.provider_id)
    return {"deleted": True, "deleted_at": timezone.now()}


DELETE_KIND = register(Kind(
    name="checkpoint_delete", label="Delete", model=Checkpoint, operation_type=DELETE,
    task_name="karbor.protection.checkpoint_delete",
    running=CheckpointStatus.DELETING, success=CheckpointStatus.DELETED, failure=CheckpointStatus.ERROR_DELETING,
    resource_running=RESOURCE_DELETING, prepare=_delete_prepare, step=_delete_step, commit=_delete_commit,
))


def checkpoint_delete_run(*, checkpoint_id: str, worker: str | None = None) -> Checkpoint | None:
    """``deleting`` → plugins' deletes → manifest removed, GC requested → ``deleted`` (soft-deleted row kept).

    Any failure leaves ``error-deleting`` with the reason; the delete can be asked for again.
    """
    return operation_run(kind=DELETE_KIND, row_id=checkpoint_id, worker=worker)
