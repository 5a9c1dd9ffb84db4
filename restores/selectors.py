"""Reads shared by the restore and verify operations: the checkpoint an operation may use, its contents."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from karbor_site.errors import Conflict, NotFound
from protection.bank import Bank
from protection.banks import bank_for_provider
from protection.models import Checkpoint, CheckpointStatus
from providers.config import ProviderConfig
from providers.plugins.base import Instance


def checkpoint_for_operation(
    *, project_id: str, provider_id: str, checkpoint_id: str, is_cloud_admin: bool = False
) -> Checkpoint:
    """The ``available`` checkpoint a restore or verification may read.

    Another project's checkpoint is "not found" (its existence does not leak), except for
    the cloud operator, who may restore any checkpoint (Karbor's admin rule). A checkpoint
    in another state is a 409 naming the state.
    """
    queryset = Checkpoint.objects.filter(pk=checkpoint_id, provider_id=provider_id)
    if not is_cloud_admin:
        queryset = queryset.filter(project_id=project_id)
    checkpoint = queryset.first()
    if checkpoint is None:
        raise NotFound(
            f"Checkpoint {checkpoint_id} could not be found in provider {provider_id}.",
            fields={"checkpoint_id": ["not found in this provider for this project"]},
        )
    if checkpoint.status != CheckpointStatus.AVAILABLE:
        raise Conflict(
            f"Checkpoint {checkpoint_id} is {checkpoint.status}; only an available checkpoint can be used.",
            fields={"checkpoint_id": [f"the checkpoint is {checkpoint.status}, not available"]},
        )
    return checkpoint


def _as_dict(value: Any) -> dict | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def checkpoint_resources(protection_plan: dict | None, resource_graph: Any = None) -> list[Instance]:
    """The resources of a checkpoint: the plan snapshot's, then any further node of the resource graph.

    ``resource_graph`` is Karbor's JSON string ``[{"0x0": [type, id, name, extra_info]}, adjacency]``
    (or the decoded list); resources held only by the graph (dependencies) follow the plan's.
    """
    found: dict[tuple[str, str], Instance] = {}
    for raw in (protection_plan or {}).get("resources") or []:
        if isinstance(raw, dict) and raw.get("type") and raw.get("id"):
            found.setdefault(
                (raw["type"], raw["id"]),
                Instance(id=raw["id"], type=raw["type"], name=raw.get("name") or "", extra_info=_as_dict(raw.get("extra_info"))),
            )
    graph = resource_graph
    if isinstance(graph, str):
        try:
            graph = json.loads(graph)
        except ValueError:
            graph = None
    if isinstance(graph, list) and graph and isinstance(graph[0], dict):
        for node in graph[0].values():
            if isinstance(node, list) and len(node) >= 2:
                resource_type, resource_id = node[0], node[1]
                name = node[2] if len(node) > 2 else ""
                extra = _as_dict(node[3]) if len(node) > 3 else None
                found.setdefault((resource_type, resource_id), Instance(id=resource_id, type=resource_type, name=name or "", extra_info=extra))
    return list(found.values())


def checkpoint_resources_required(checkpoint: Checkpoint, *, action: str) -> list[Instance]:
    """The checkpoint's resources; Conflict when it holds none (nothing to ``action``)."""
    resources = checkpoint_resources(checkpoint.protection_plan, checkpoint.resource_graph)
    if not resources:
        raise Conflict(
            f"Checkpoint {checkpoint.id} holds no resources to {action}.",
            fields={"checkpoint_id": ["the checkpoint holds no resources"]},
        )
    return resources


def saved_infos_by_key(checkpoint: Checkpoint | None) -> dict[str, dict]:
    """The checkpoint's per-resource saved info, keyed ``"<type>#<id>"``."""
    raw = getattr(checkpoint, "saved_info", None) or {}
    return {key: value for key, value in raw.items() if isinstance(value, dict)}


@dataclass
class CheckpointContents:
    """What the bank holds for a checkpoint: what restore and verify read, resource by resource."""

    bank: Bank
    resources: list[Instance]
    saved_info: dict[str, dict]  # by "<type>#<id>"
    protected: dict[str, str]  # resources_status when it was protected
    bytes_total: int
    items_total: int


def checkpoint_contents(*, provider: ProviderConfig, checkpoint_id: str) -> CheckpointContents:
    """Read a checkpoint's manifest (the truth) with the catalog row as a fallback for older manifests."""
    bank = bank_for_provider(provider)
    manifest = bank.read_manifest(checkpoint_id)
    meta = manifest.meta.get("checkpoint") or {}
    row = Checkpoint.all_objects.filter(pk=checkpoint_id).first()
    plan = meta.get("protection_plan") or (row.protection_plan if row else None)
    graph = meta.get("resource_graph") if "resource_graph" in meta else (row.resource_graph if row else None)
    saved = saved_infos_by_key(row)
    saved.update({key: value for key, value in (meta.get("saved_info") or {}).items() if isinstance(value, dict)})
    stats = manifest.stats
    return CheckpointContents(
        bank=bank, resources=checkpoint_resources(plan, graph), saved_info=saved,
        protected=meta.get("resources_status") or (row.resources_status if row else {}) or {},
        bytes_total=stats.bytes, items_total=stats.files + stats.dirs + stats.symlinks + stats.streams,
    )
