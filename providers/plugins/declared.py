"""Endpoints the operator declares for a server-backed plugin (Redis, S3, …): sources and restore targets.

Every entry has a ``name`` and ``projects``; visibility is **deny by default**: an entry without
``projects`` is visible to no project (``["*"]`` opens it to every project). Credentials are never
written in the provider file: an entry names the environment variables (or settings) that hold
them, read when a protect or restore needs them, so a rotated secret needs no reload and a missing
one fails that operation with the variable named instead of stopping the whole provider.
"""
from __future__ import annotations

import abc
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured

from providers.plugins.base import Instance, PluginError, ProtectablePlugin

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



def declared_config_schema(endpoint_schema: dict[str, Any]) -> dict[str, Any]:
    """The operator's options of an endpoint plugin: ``sources`` and ``restore_targets`` lists of one shape."""
    return {
        "type": "object",
        "properties": {
            "sources": {"type": "array", "items": endpoint_schema},
            "restore_targets": {"type": "array", "items": endpoint_schema},
        },
        "additionalProperties": False,
    }


class DeclaredEndpointPlugin(ProtectablePlugin):
    """A plugin whose instances are the operator's declared sources, one instance per source.

    Subclasses name what identifies a source's data (``identity``); the instance id is its UUID5.
    Listing never contacts a server: it is instant and does not reveal whether a host is up.
    """

    kind: ClassVar[str] = ""  # "Redis", "S3": how messages name the server type

    def configure(self, options: dict[str, Any]) -> None:
        self.sources = parse_declared(options, "sources")
        self.restore_targets = parse_declared(options, "restore_targets")

    @abc.abstractmethod
    def identity(self, source: Declared) -> tuple:
        """What identifies the data of ``source`` (host, port, db; endpoint, bucket, prefix)."""

    def extra_info(self, source: Declared) -> dict[str, Any]:
        return {"source": source.name}

    def instance_of(self, source: Declared) -> Instance:
        return Instance(id=endpoint_id(*self.identity(source)), type=self.resource_type, name=source.name,
                        extra_info=self.extra_info(source))

    def list_instances(self, *, project_id: str, parameters: dict[str, Any] | None = None) -> list[Instance]:
        found: dict[str, Instance] = {}
        for source in self.sources:
            if source.visible_to(project_id):
                instance = self.instance_of(source)
                found.setdefault(instance.id, instance)
        return list(found.values())

    def source_of(self, project_id: str, resource: Instance) -> Declared:
        """The declared source behind ``resource`` if ``project_id`` may still use it; PluginError otherwise."""
        for source in self.sources:
            if source.visible_to(project_id) and self.instance_of(source).id == resource.id:
                return source
        raise PluginError(
            f"{self.resource_type} {resource.name or resource.id} is not declared for this project "
            "(the operator removed or hid its source)"
        )

    def destination(self, project_id: str, resource: Instance, parameters: dict[str, Any]) -> Declared:
        """Where a restore writes: the restore target named by ``parameters['target']``, else the source."""
        if parameters.get("target"):
            return restore_target_named(self.restore_targets, str(parameters["target"]), project_id=project_id,
                                        kind=self.kind)
        return self.source_of(project_id, resource)

    def check_restore_parameters(self, *, project_id: str, resource: Instance, parameters: dict[str, Any]) -> None:
        """Raise PluginError when a restore with ``parameters`` has nowhere it may write (asked before it starts)."""
        self.destination(project_id, resource, parameters)
