"""``Filesystem::Directory``: directories the operator lets projects protect.

The operator declares *sources* (a name, an absolute path, which projects may see it, and
whether its subdirectories are offered too) and *restore targets* (directories a restore may
write into). Tenants only ever see ids and names: an instance id is a UUID5 of the real path,
so it is stable, URL-safe and reveals nothing, and a path a tenant sends is never trusted.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from karbor_site.errors import NotFound
from providers.constants import FILESYSTEM_DIRECTORY
from protection.bank import Progress
from protection.bank.manifest import manifest_key
from providers.plugins import fs_restore
from providers.plugins.fs_restore import directory_id  # noqa: F401 - the ids' home; re-exported
from providers.plugins.base import Instance, PluginError, ProtectablePlugin, ProtectContext, RestoreContext, VerifyContext

log = logging.getLogger(__name__)

# Fixed namespace: instance ids must not change across restarts, hosts or releases.
ALL_PROJECTS = "*"

_PROJECTS_SCHEMA = {
    "type": "array",
    "items": {"type": "string", "minLength": 1},
    "minItems": 1,
    "description": 'Project ids allowed to see this entry, or ["*"] for every project. '
    "Without it the entry is visible to no project (deny by default).",
}


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
                "description": "Replace files and links that already exist at the destination (default). When "
                "false the restore fails, before writing anything, if any of them exists. Files that are not in "
                "the checkpoint are never deleted.",
                "type": "boolean",
                "default": True,
            },
        },
        "additionalProperties": False,
    }
    saved_info_schema = {
        "title": "Saved directory information",
        "description": "What a checkpoint records about the protected directory (returned by protect). "
        "Besides the properties below it holds: path (the directory read), dirs, symlinks, bytes_reused "
        "(unchanged files taken from the previous checkpoint without reading them), new_bytes (chunks the "
        "bank did not hold before), excluded (entries skipped by exclude patterns) and warnings (entries "
        "that could not be read completely).",
        "type": "object",
        "properties": {
            "files": {"title": "Files", "description": "Regular files stored.", "type": "integer", "minimum": 0},
            "bytes": {"title": "Bytes", "description": "Total size of the file contents stored.", "type": "integer", "minimum": 0},
            "manifest": {
                "title": "Manifest",
                "description": "Bank key of the checkpoint manifest (paths, modes, times and chunk ids).",
                "type": "string",
            },
        },
        "required": ["files", "bytes", "manifest"],
        "additionalProperties": True,
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
            "allow_restore_in_place": {
                "type": "boolean",
                "description": "Whether a restore without restore_target may write to the original directory "
                "(default true); when false a restore must name one of restore_targets.",
            },
            "include_settings_sources": {
                "type": "boolean",
                "description": "Also offer KARBOR_FS_SOURCES / KARBOR_FS_RESTORE_TARGETS, to the projects "
                "KARBOR_FS_PROJECTS names (none when it is empty).",
            },
        },
        "additionalProperties": False,
    }

    def configure(self, options: dict[str, Any]) -> None:
        # Deny by default: an entry names the projects that may use it ("*" for all of them);
        # one that names none is visible to no project, so a forgotten line exposes nothing.
        sources: list[Source] = []
        for index, raw in enumerate(options.get("sources", [])):
            path = _absolute(raw["path"], f"options.sources.{index}.path")
            sources.append(
                Source(
                    name=raw["name"],
                    path=path,
                    projects=_projects(raw, f"options.sources.{index} ({raw['name']})"),
                    subdirectories=bool(raw.get("subdirectories", False)),
                    max_depth=int(raw.get("max_depth", 1)),
                )
            )
        targets: list[RestoreTarget] = []
        for index, raw in enumerate(options.get("restore_targets", [])):
            path = _absolute(raw["path"], f"options.restore_targets.{index}.path", must_be_dir=True)
            targets.append(RestoreTarget(path=path, projects=_projects(raw, f"options.restore_targets.{index} ({path})")))
        if options.get("include_settings_sources"):
            projects = tuple(settings.KARBOR_FS_PROJECTS)
            if not projects and (settings.KARBOR_FS_SOURCES or settings.KARBOR_FS_RESTORE_TARGETS):
                log.warning(
                    "KARBOR_FS_SOURCES / KARBOR_FS_RESTORE_TARGETS are visible to no project: "
                    "set KARBOR_FS_PROJECTS to the project ids that may use them"
                )
            for index, raw_path in enumerate(settings.KARBOR_FS_SOURCES):
                path = _absolute(raw_path, f"KARBOR_FS_SOURCES.{index}")
                sources.append(Source(str(path), path, projects, subdirectories=False, max_depth=1))
            for index, raw_path in enumerate(settings.KARBOR_FS_RESTORE_TARGETS):
                path = _absolute(raw_path, f"KARBOR_FS_RESTORE_TARGETS.{index}", must_be_dir=True)
                targets.append(RestoreTarget(path, projects))
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

    # --- protection side ---------------------------------------------------------------
    def protect(self, context: ProtectContext) -> dict[str, Any]:
        """Stream the directory tree into the checkpoint under ``context.prefix``.

        The instance was re-resolved by the flow through ``show_instance``, so its path is one
        the operator declared; a tenant-supplied path never reaches this point.
        """
        path = (context.resource.extra_info or {}).get("path")
        if not path or not os.path.isdir(path):
            raise PluginError(f"directory {context.resource.name} is missing or not a directory")
        excludes = _exclude_patterns(context.parameters.get("exclude"))
        writer = context.writer
        before = dataclasses.replace(writer.stats, warnings=list(writer.stats.warnings))
        bytes_total, items_total = _tree_size(path, excludes)
        excluded = [0]

        def on_progress(progress) -> None:
            if context.on_progress is not None:
                context.on_progress(
                    Progress(
                        bytes_done=progress.bytes_done,
                        bytes_total=max(bytes_total, progress.bytes_done),
                        items_done=progress.items_done,
                        items_total=max(items_total, progress.items_done),
                    )
                )

        walk = writer._walk
        if excludes:
            # The bank's writer has no exclude option; filter its walk for this call only.
            def filtered_walk(src, prefix):
                skipped_dirs: list[str] = []
                for entry_path, stored, st in walk(src, prefix):
                    relative = stored[len(prefix) + 1 :] if prefix else stored
                    if any(relative.startswith(d + "/") for d in skipped_dirs) or _excluded(relative, excludes):
                        if stat.S_ISDIR(st.st_mode):
                            skipped_dirs.append(relative)
                        excluded[0] += 1
                        continue
                    yield entry_path, stored, st

            writer._walk = filtered_walk
        try:
            writer.add_tree(path, prefix=context.prefix, on_progress=on_progress)
        except OSError as exc:
            raise PluginError(f"directory {context.resource.name} could not be read: {exc.strerror or exc}") from exc
        finally:
            if excludes:
                writer._walk = walk
        after = writer.stats
        return {
            "path": str(path),
            "manifest": manifest_key(writer.manifest_id),
            "files": after.files - before.files,
            "dirs": after.dirs - before.dirs,
            "symlinks": after.symlinks - before.symlinks,
            "bytes": after.bytes - before.bytes,
            "bytes_reused": after.bytes_reused - before.bytes_reused,
            "new_bytes": after.new_bytes - before.new_bytes,
            "excluded": excluded[0],
            "warnings": after.warnings[len(before.warnings) :][:100],
        }

    # --- restore / verify (the rules live in providers/plugins/fs_restore.py) -------------
    def check_restore_target(
        self, *, project_id: str, target: str | None, resources: list[Instance], saved_infos: dict[str, dict]
    ) -> None:
        """Raise PluginError naming the problem when these directories cannot be restored to ``target``."""
        fs_restore.resolve_destinations(
            self, project_id=project_id, target=target, resources=resources, saved_infos=saved_infos
        )

    def restore(self, context: RestoreContext) -> dict[str, Any]:
        return fs_restore.restore(self, context)

    def verify(self, context: VerifyContext) -> dict[str, Any]:
        return fs_restore.verify(self, context)

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


def _exclude_patterns(raw: Any) -> list[str]:
    if not raw:
        return []
    if isinstance(raw, str):
        raw = [part.strip() for part in raw.split(",")]
    return [pattern.strip("/") for pattern in raw if pattern and pattern.strip("/")]


def _excluded(relative: str, patterns: list[str]) -> bool:
    """``*.tmp`` matches at any depth; ``cache/**`` (or ``cache``) the whole subtree."""
    name = relative.rsplit("/", 1)[-1]
    for pattern in patterns:
        if pattern.endswith("/**"):
            base = pattern[:-3]
            if fnmatch.fnmatchcase(relative, base):
                return True
            continue
        if fnmatch.fnmatchcase(relative, pattern) or ("/" not in pattern and fnmatch.fnmatchcase(name, pattern)):
            return True
    return False


def _tree_size(root: str, excludes: list[str]) -> tuple[int, int]:
    """Bytes of regular files and number of entries under ``root`` (for progress totals; links not followed)."""
    total_bytes, total_items = 0, 1
    stack = [("", root)]
    while stack:
        relative_dir, directory = stack.pop()
        try:
            with os.scandir(directory) as entries:
                found = list(entries)
        except OSError:
            continue
        for entry in found:
            relative = f"{relative_dir}/{entry.name}" if relative_dir else entry.name
            if excludes and _excluded(relative, excludes):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            total_items += 1
            if stat.S_ISDIR(st.st_mode):
                stack.append((relative, entry.path))
            elif stat.S_ISREG(st.st_mode):
                total_bytes += st.st_size
    return total_bytes, total_items


def _projects(raw: dict[str, Any], where: str) -> tuple[str, ...]:
    projects = tuple(raw.get("projects") or ())
    if not projects:
        log.warning("%s declares no projects: it is visible to no project", where)
    return projects


def _absolute(raw: str, field: str, *, must_be_dir: bool = False) -> Path:
    path = Path(raw)
    if not path.is_absolute():
        raise ImproperlyConfigured(f"{field}: {raw!r} is not an absolute path")
    if must_be_dir and path.exists() and not path.is_dir():
        raise ImproperlyConfigured(f"{field}: {raw!r} is not a directory")
    if must_be_dir and not path.exists():
        log.warning("%s: restore target %s does not exist yet", field, raw)
    return path
