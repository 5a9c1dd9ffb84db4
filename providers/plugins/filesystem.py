"""``Filesystem::Directory``: directories the operator lets projects protect.

The operator declares *sources* (a name, an absolute path, which projects may see it, and
whether its subdirectories are offered too) and *restore targets* (directories a restore may
write into). Tenants only ever see ids and names: an instance id is a UUID5 of the real path,
so it is stable, URL-safe and reveals nothing, and a path a tenant sends is never trusted.
"""
from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from karbor_site.api.exceptions import NotFound
from providers.constants import FILESYSTEM_DIRECTORY
from providers.plugins.base import Instance, ProtectablePlugin

log = logging.getLogger(__name__)

# Fixed namespace: instance ids must not change across restarts, hosts or releases.
INSTANCE_NAMESPACE = uuid.UUID("0e0c5c47-3a43-5b6e-9f8a-6b6172626f72")
ALL_PROJECTS = "*"

_PROJECTS_SCHEMA = {
    "type": "array",
    "items": {"type": "string", "minLength": 1},
    "minItems": 1,
    "description": 'Project ids allowed to see this entry, or ["*"] for every project.',
}


def directory_id(real_path: str | Path) -> str:
    """The instance id of a directory: a UUID5 of its resolved absolute path."""
    return str(uuid.uuid5(INSTANCE_NAMESPACE, str(real_path)))


@dataclass(frozen=True)
class Source:
    name: str
    path: Path
    projects: tuple[str, ...]
    subdirectories: bool
    max_depth: int

    def visible_to(self, project_id: str) -> bool:
        return ALL_PROJECTS in self.projects or project_id in self.projects


@dataclass(frozen=True)
class RestoreTarget:
    path: Path
    projects: tuple[str, ...]

    def visible_to(self, project_id: str) -> bool:
        return ALL_PROJECTS in self.projects or project_id in self.projects


class FilesystemDirectoryPlugin(ProtectablePlugin):
    """Protects directory trees on a file system the service can read."""

    resource_type = FILESYSTEM_DIRECTORY
    parent_types = ()
    options_schema = {
        "title": "Directory backup options",
        "description": "How a directory tree is read when a checkpoint is taken.",
        "type": "object",
        "properties": {
            "exclude": {
                "title": "Exclude patterns",
                "description": "Glob patterns, relative to the directory, of files and directories to skip "
                "(for example '*.tmp' or 'cache/**'). A string is read as a comma-separated list.",
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "default": [],
            },
            "follow_symlinks": {
                "title": "Follow symbolic links",
                "description": "Symbolic links are stored as links and never followed; only false is accepted.",
                "type": "boolean",
                "enum": [False],
                "default": False,
            },
        },
        "additionalProperties": False,
    }
    restore_schema = {
        "title": "Directory restore options",
        "description": "How a directory tree is written back.",
        "type": "object",
        "properties": {
            "overwrite": {
                "title": "Overwrite existing files",
                "description": "Replace files that already exist at the destination; when false the restore "
                "fails on the first existing file instead of changing it.",
                "type": "boolean",
                "default": False,
            },
        },
        "additionalProperties": False,
    }
    saved_info_schema = {
        "title": "Saved directory information",
        "description": "What a checkpoint records about the protected directory.",
        "type": "object",
        "properties": {
            "files": {"title": "Files", "description": "Number of entries stored.", "type": "integer"},
            "bytes": {"title": "Bytes", "description": "Total size of the file contents stored.", "type": "integer"},
            "manifest": {
                "title": "Manifest",
                "description": "Bank key of the tree manifest (paths, modes, times and chunk ids).",
                "type": "string",
            },
        },
    }
    config_schema = {
        "type": "object",
        "properties": {
            "sources": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": 255},
                        "path": {"type": "string", "minLength": 1},
                        "projects": _PROJECTS_SCHEMA,
                        "subdirectories": {"type": "boolean"},
                        "max_depth": {"type": "integer", "minimum": 1},
                    },
                    "required": ["name", "path"],
                    "additionalProperties": False,
                },
            },
            "restore_targets": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"path": {"type": "string", "minLength": 1}, "projects": _PROJECTS_SCHEMA},
                    "required": ["path"],
                    "additionalProperties": False,
                },
            },
            "include_settings_sources": {
                "type": "boolean",
                "description": "Also offer KARBOR_FS_SOURCES / KARBOR_FS_RESTORE_TARGETS to every project.",
            },
        },
        "additionalProperties": False,
    }

    def configure(self, options: dict[str, Any]) -> None:
        sources: list[Source] = []
        for index, raw in enumerate(options.get("sources", [])):
            path = _absolute(raw["path"], f"options.sources.{index}.path")
            sources.append(
                Source(
                    name=raw["name"],
                    path=path,
                    projects=tuple(raw.get("projects", [ALL_PROJECTS])),
                    subdirectories=bool(raw.get("subdirectories", False)),
                    max_depth=int(raw.get("max_depth", 1)),
                )
            )
        targets: list[RestoreTarget] = []
        for index, raw in enumerate(options.get("restore_targets", [])):
            path = _absolute(raw["path"], f"options.restore_targets.{index}.path", must_be_dir=True)
            targets.append(RestoreTarget(path=path, projects=tuple(raw.get("projects", [ALL_PROJECTS]))))
        if options.get("include_settings_sources"):
            for index, raw_path in enumerate(settings.KARBOR_FS_SOURCES):
                path = _absolute(raw_path, f"KARBOR_FS_SOURCES.{index}")
                sources.append(Source(str(path), path, (ALL_PROJECTS,), subdirectories=False, max_depth=1))
            for index, raw_path in enumerate(settings.KARBOR_FS_RESTORE_TARGETS):
                path = _absolute(raw_path, f"KARBOR_FS_RESTORE_TARGETS.{index}", must_be_dir=True)
                targets.append(RestoreTarget(path, (ALL_PROJECTS,)))
        names = [source.name for source in sources]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ImproperlyConfigured(f"options.sources: duplicate source name {duplicates[0]!r}")
        self.sources: tuple[Source, ...] = tuple(sources)
        self.restore_targets: tuple[RestoreTarget, ...] = tuple(targets)

    # --- protectable side -------------------------------------------------------------
    def list_instances(self, *, project_id: str, parameters: dict[str, Any] | None = None) -> list[Instance]:
        instances: dict[str, Instance] = {}
        for source in self.sources:
            if not source.visible_to(project_id):
                continue
            for instance in self._source_instances(source):
                instances.setdefault(instance.id, instance)
        return list(instances.values())

    def show_instance(self, *, project_id: str, instance_id: str, parameters: dict[str, Any] | None = None) -> Instance:
        for instance in self.list_instances(project_id=project_id, parameters=parameters or {}):
            if instance.id == instance_id:
                return instance
        raise NotFound(f"{self.resource_type} {instance_id} could not be found.")

    def allowed_restore_targets(self, *, project_id: str) -> list[Path]:
        """Directories a restore for ``project_id`` may write into (besides the original location)."""
        return [target.path for target in self.restore_targets if target.visible_to(project_id)]

    def _source_instances(self, source: Source) -> list[Instance]:
        root = Path(os.path.realpath(source.path))
        if not root.is_dir():
            log.warning("Filesystem source %r: %s is missing or not a directory; not listed", source.name, source.path)
            return []
        found = [self._instance(root, source, source.name)]
        if source.subdirectories:
            found.extend(self._subdirectories(root, source))
        return found

    def _subdirectories(self, root: Path, source: Source) -> list[Instance]:
        found: list[Instance] = []
        level = [root]
        for _depth in range(source.max_depth):
            next_level: list[Path] = []
            for directory in level:
                try:
                    entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
                except OSError as exc:
                    log.warning("Filesystem source %r: cannot list %s: %s", source.name, directory, exc)
                    continue
                for entry in entries:
                    # A symlink is never followed: it could lead outside the source the operator declared.
                    if entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
                        continue
                    real = Path(os.path.realpath(entry.path))
                    if not real.is_relative_to(root):
                        continue
                    relative = real.relative_to(root).as_posix()
                    found.append(self._instance(real, source, f"{source.name}/{relative}"))
                    next_level.append(real)
            level = next_level
        return found

    def _instance(self, real: Path, source: Source, name: str) -> Instance:
        return Instance(
            id=directory_id(real),
            type=self.resource_type,
            name=name,
            extra_info={"path": str(real), "source": source.name},
        )


def _absolute(raw: str, field: str, *, must_be_dir: bool = False) -> Path:
    path = Path(raw)
    if not path.is_absolute():
        raise ImproperlyConfigured(f"{field}: {raw!r} is not an absolute path")
    if must_be_dir and path.exists() and not path.is_dir():
        raise ImproperlyConfigured(f"{field}: {raw!r} is not a directory")
    if must_be_dir and not path.exists():
        log.warning("%s: restore target %s does not exist yet", field, raw)
    return path
