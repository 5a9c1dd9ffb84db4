"""Reads shared by the restore and verify services: the checkpoint an operation may use, its resources."""
from __future__ import annotations

import json
from typing import Any

from karbor_site.api.exceptions import Conflict, NotFound
from protection.models import Checkpoint, CheckpointStatus
from providers.plugins.base import Instance


def resource_key(resource_type: str, resource_id: str) -> str:
    """``"<type>#<id>"``: the key of ``resources_status``/``resources_reason``/``saved_info``."""
    return f"{resource_type}#{resource_id}"


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


def merged_parameters(parameters: dict[str, Any], resource_type: str, resource_id: str) -> dict[str, Any]:
    """Type-level parameters, overridden by the ``type#id`` ones (as for plans)."""
    merged = dict(parameters.get(resource_type) or {})
    merged.update(parameters.get(resource_key(resource_type, resource_id)) or {})
    return merged
