"""Endpoints the operator declares for a server-backed plugin (Redis, S3, …): sources and restore targets.

Every entry has a ``name`` and ``projects``; visibility is **deny by default**: an entry without
``projects`` is visible to no project (``["*"]`` opens it to every project). Credentials are never
written in the provider file: an entry names the environment variables (or settings) that hold
them, read when a protect or restore needs them, so a rotated secret needs no reload and a missing
one fails that operation with the variable named instead of stopping the whole provider.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from providers.plugins.base import PluginError

ALL_PROJECTS = "*"
# Fixed namespace: instance ids must not change across restarts, hosts or releases.
ENDPOINT_NAMESPACE = uuid.UUID("5f1d2a8e-6b0c-5d43-9a51-6b61726b6f72")

PROJECTS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {"type": "string", "minLength": 1},
    "description": 'Project ids allowed to use this entry, or ["*"] for every project. '
    "Without it the entry is visible to no project.",
}
ENV_NAME_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
    "description": "Name of the environment variable (or setting) holding the secret, never the secret itself.",
}
NAME_SCHEMA: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[^/#]+$"}


@dataclass(frozen=True)
class Declared:
    """One declared source or restore target: its name, who may use it, and its raw settings."""

    name: str
    projects: tuple[str, ...]
    settings: dict[str, Any]

    def visible_to(self, project_id: str) -> bool:
        return ALL_PROJECTS in self.projects or project_id in self.projects

    def get(self, key: str, default: Any = None) -> Any:
        return self.settings.get(key, default)


def parse_declared(options: dict[str, Any], key: str) -> tuple[Declared, ...]:
    """``options[key]`` as Declared entries; ImproperlyConfigured naming a duplicate name."""
    found: list[Declared] = []
    seen: set[str] = set()
    for index, raw in enumerate(options.get(key) or []):
        name = raw["name"]
        if name in seen:
            raise ImproperlyConfigured(f"options.{key}.{index}.name: duplicate name {name!r}")
        seen.add(name)
        found.append(Declared(name=name, projects=tuple(raw.get("projects") or ()), settings=dict(raw)))
    return tuple(found)


def endpoint_id(*parts: Any) -> str:
    """A stable, opaque instance id: a UUID5 of what identifies the data (never shown to tenants)."""
    return str(uuid.uuid5(ENDPOINT_NAMESPACE, "\x1f".join(str(part) for part in parts)))


def secret(entry: Declared, option: str, *, required: bool = True) -> str | None:
    """The secret held by the variable ``entry`` names in ``option``; PluginError naming it when unset."""
    from providers.config import lookup_variable

    variable = entry.get(option)
    if not variable:
        return None
    value = lookup_variable(variable)
    if value is None and required:
        raise PluginError(f"{entry.name}: the operator's variable {variable} ({option}) is not set")
    return value


def restore_target_named(targets: tuple[Declared, ...], name: str, *, project_id: str, kind: str) -> Declared:
    """The declared restore target ``name`` of ``project_id``; PluginError listing the allowed names."""
    allowed = [target.name for target in targets if target.visible_to(project_id)]
    for target in targets:
        if target.name == name and target.visible_to(project_id):
            return target
    listed = ", ".join(allowed) if allowed else "none are declared for this project"
    raise PluginError(f"{kind} restore target {name!r} is not declared for this project; allowed: {listed}")

