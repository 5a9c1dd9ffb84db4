"""Restore and verify of ``Filesystem::Directory`` resources (the plugin delegates here).

Where a restore writes
    * ``restore_target`` null or empty: **in place**, to the directory's original path. That
      path is taken from the saved info (or the plan's ``extra_info``) only when its UUID5 is
      the resource id (so a forged ``extra_info`` cannot redirect the restore) and it still
      lies inside a source the project may use. The operator can forbid restores in place
      with the plugin option ``allow_restore_in_place: false``.
    * otherwise ``restore_target`` must be a declared restore-target directory of the project,
      or an absolute path inside one. It is resolved with ``realpath``; ``..`` is refused,
      and so is a path whose symbolic links lead out of the declared directory.
    * A checkpoint holding **one** directory is restored into the destination itself (what a
      user expects from ``restore_target=/srv/restore/app``). With several directories, each
      goes into a subdirectory named after its original directory (``…/data``, ``…/b``); two
      directories with the same name get ``-<first 8 characters of the id>`` appended.

What a restore never does
    Write outside the destination: item names with ``..``, absolute names or NUL bytes, an
    item below a symbolic link of the checkpoint, a symbolic link or a non-directory in the
    destination where the checkpoint has a directory — all are refused *before anything is
    written*, with the reason in ``resources_reason``. The bank's reader enforces the same
    rules again while writing: it walks with directory descriptors, opening every component
    (from ``/`` down) with ``O_NOFOLLOW|O_DIRECTORY`` and creating each entry relative to its
    parent's descriptor (``protection/bank/safe_fs.py``), and files are created with
    ``O_EXCL|O_NOFOLLOW`` after unlinking what was there. So a tree changed between the check
    and the write, even a directory swapped for a symlink mid-restore, cannot be escaped through.

Parameters (``restore_schema``)
    ``overwrite`` (default true): replace files and links that exist at the destination. When
    false, the restore fails before writing anything if any of them exists. Files present at
    the destination but not in the checkpoint are left alone (a restore adds and replaces, it
    does not delete).

Verify
    Every chunk of every item of the resource is fetched, decrypted/authenticated, decompressed
    and re-hashed (the reader's pipeline), and file sizes are compared with the item records.
    Damage is reported per item.
"""
from __future__ import annotations

import json
import os
import stat as stat_mod
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from protection.bank import BankError, Item, Progress
from protection.bank.manifest import TYPE_DIR, TYPE_FILE, TYPE_STREAM, TYPE_SYMLINK
from protection.bank.reader import fetch_ordered
from protection.bank.safe_fs import set_directory_metadata
from providers.constants import FILESYSTEM_DIRECTORY
from providers.plugins.base import Instance, PluginError, RestoreContext, VerifyContext, bank_reading


class FilesystemDirectoryPlugin(Protocol):
    """What the restore rules need of the ``Filesystem::Directory`` plugin (``providers.plugins.filesystem``,
    which imports this module)."""

    options: dict[str, Any]
    sources: list[Any]

    def allowed_restore_targets(self, *, project_id: str) -> list[Path]: ...

MAX_REPORTED = 5


@dataclass(frozen=True)
class Destination:
    """Where one resource is restored: ``path`` is absolute and free of symlinks and ``..``."""

    path: str
    in_place: bool
    # The operator's restore-target directory itself: its own mode and times are left alone.
    is_declared_root: bool = False


# The namespace of directory instance ids (here, not in ``filesystem``, which imports this module).
INSTANCE_NAMESPACE = uuid.UUID("0e0c5c47-3a43-5b6e-9f8a-6b6172626f72")


def directory_id(real_path: str | Path) -> str:
    """The instance id of a directory: a UUID5 of its resolved absolute path."""
    return str(uuid.uuid5(INSTANCE_NAMESPACE, str(real_path)))


# --- where -------------------------------------------------------------------------------
def recorded_path(resource: Instance, saved_info: dict[str, Any] | None) -> str | None:
    """The original path of ``resource`` if a trustworthy one is recorded (its UUID5 is the id)."""
    extra = resource.extra_info
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError:
            extra = None
    for candidate in ((saved_info or {}).get("path"), (extra or {}).get("path") if isinstance(extra, dict) else None):
        if isinstance(candidate, str) and os.path.isabs(candidate):
            normal = os.path.normpath(candidate)
            if directory_id(normal) == resource.id:
                return normal
    return None


def _subdirectory_names(resources: list[Instance], saved_infos: dict[str, dict]) -> dict[str, str]:
    """Resource id → subdirectory name, for checkpoints holding several directories."""
    wanted: dict[str, str] = {}
    for resource in resources:
        path = recorded_path(resource, saved_infos.get(resource.id))
        name = os.path.basename(path) if path else (resource.name or "").rsplit("/", 1)[-1]
        if not name or name in (".", "..") or "\x00" in name:
            name = resource.id
        wanted[resource.id] = name
    counts: dict[str, int] = {}
    for name in wanted.values():
        counts[name] = counts.get(name, 0) + 1
    return {rid: (name if counts[name] == 1 else f"{name}-{rid[:8]}") for rid, name in wanted.items()}


def _describe_targets(roots: list[Path]) -> str:
    return ", ".join(str(root) for root in roots) or "none are declared for this project"


def resolve_destinations(
    plugin: FilesystemDirectoryPlugin,
    *,
    project_id: str,
    target: str | None,
    resources: list[Instance],
    saved_infos: dict[str, dict] | None = None,
) -> dict[str, Destination]:
    """Resource id → Destination for every directory of a checkpoint; PluginError names the problem.

    Used both when a restore is requested (so a bad target is a 400 and nothing is created)
    and again by the flow right before writing (the configuration may have changed).
    """
    saved_infos = saved_infos or {}
    target = (target or "").strip() or None
    if target is None:
        if not plugin.options.get("allow_restore_in_place", True):
            raise PluginError(
                "restoring in place is disabled on this provider; set restore_target to one of: "
                + _describe_targets(plugin.allowed_restore_targets(project_id=project_id))
            )
        return {r.id: _in_place(plugin, project_id=project_id, resource=r, saved_info=saved_infos.get(r.id)) for r in resources}
    base = _inside_declared_target(plugin, project_id=project_id, target=target)
    if len(resources) <= 1:
        return {r.id: base for r in resources}
    names = _subdirectory_names(resources, saved_infos)
    return {r.id: Destination(path=os.path.join(base.path, names[r.id]), in_place=False) for r in resources}


def _in_place(plugin: FilesystemDirectoryPlugin, *, project_id: str, resource: Instance, saved_info) -> Destination:
    path = recorded_path(resource, saved_info)
    if path is None:
        raise PluginError(
            f"the checkpoint does not record the original location of {resource.name or resource.id}; "
            "set restore_target to restore it elsewhere"
        )
    real = os.path.realpath(path)
    if real != path:
        raise PluginError(
            f"the original location {path} now leads through a symbolic link (to {real}); "
            "refusing to restore through it"
        )
    sources = [Path(os.path.realpath(s.path)) for s in plugin.sources if s.visible_to(project_id)]
    if not any(Path(path).is_relative_to(root) for root in sources):
        raise PluginError(
            f"the original location {path} is no longer inside a source this project may use; "
            "set restore_target to restore it elsewhere"
        )
    return Destination(path=path, in_place=True)


def _inside_declared_target(plugin: FilesystemDirectoryPlugin, *, project_id: str, target: str) -> Destination:
    roots = plugin.allowed_restore_targets(project_id=project_id)
    if "\x00" in target or not os.path.isabs(target):
        raise PluginError(f"restore_target must be an absolute path inside one of: {_describe_targets(roots)}")
    if ".." in target.split("/"):
        raise PluginError("restore_target must not contain '..'")
    if not roots:
        raise PluginError("this provider declares no restore target directory for this project")
    normal = os.path.normpath(target)
    real = os.path.realpath(normal)
    for root in roots:
        real_root = os.path.realpath(root)
        if Path(real).is_relative_to(real_root):
            if not os.path.isdir(real_root):
                raise PluginError(f"the restore target directory {root} does not exist")
            if os.path.lexists(real) and not os.path.isdir(real):
                raise PluginError(f"restore_target {target} exists and is not a directory")
            return Destination(path=real, in_place=False, is_declared_root=(real == real_root))
    if any(Path(normal).is_relative_to(root) for root in roots):
        raise PluginError(f"restore_target {target} leads out of the restore target directory through a symbolic link")
    raise PluginError(f"restore_target {target} is not inside a restore target directory; allowed: {_describe_targets(roots)}")


# --- what --------------------------------------------------------------------------------
def _unsafe_name(relative: str) -> str | None:
    parts = relative.split("/")
    if not relative or relative.startswith("/") or "\x00" in relative or any(p in ("", ".", "..") for p in parts):
        return f"unsafe item name {relative!r} (absolute, empty or with '..')"
    return None


@dataclass
class _Scan:
    root: Item | None
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0

    @property
    def items(self) -> int:
        return self.files + self.dirs + self.symlinks + (1 if self.root is not None else 0)


def _scan(manifest, prefix: str, dest: str, *, overwrite: bool) -> _Scan:
    """Check the resource's items and the destination before anything is written."""
    scan = _Scan(root=None)
    links: set[str] = set()
    problems: list[str] = []
    for item in manifest.items():
        if item.path == prefix:
            scan.root = item
            continue
        if not item.path.startswith(prefix + "/"):
            continue
        relative = item.path[len(prefix) + 1 :]
        reason = _unsafe_name(relative)
        parent = relative.rsplit("/", 1)[0] if "/" in relative else ""
        if reason is None and parent and any(parent == link or parent.startswith(link + "/") for link in links):
            reason = f"{relative!r} lies below a symbolic link of the checkpoint"
        if reason is None:
            reason = _destination_conflict(os.path.join(dest, relative), relative, item, overwrite=overwrite)
        if reason:
            problems.append(reason)
            if len(problems) >= MAX_REPORTED:
                break
            continue
        if item.type == TYPE_DIR:
            scan.dirs += 1
        elif item.type == TYPE_SYMLINK:
            scan.symlinks += 1
            links.add(relative)
        else:
            scan.files += 1
            scan.bytes += item.size
    if problems:
        raise PluginError("refusing to restore: " + "; ".join(problems))
    if not scan.items:
        raise PluginError("the checkpoint holds no data for this directory")
    return scan


def _destination_conflict(path: str, relative: str, item: Item, *, overwrite: bool) -> str | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return f"a parent of {relative!r} at the destination is not a directory"
    if item.type == TYPE_DIR:
        if stat_mod.S_ISLNK(st.st_mode):
            return f"{relative!r} at the destination is a symbolic link; refusing to restore through it"
        if not stat_mod.S_ISDIR(st.st_mode):
            return f"{relative!r} at the destination exists and is not a directory"
        return None
    if stat_mod.S_ISDIR(st.st_mode):
        return f"{relative!r} at the destination is a directory; the checkpoint has a {item.type} there"
    if not overwrite:
        return f"{relative!r} exists at the destination and overwrite is false"
    return None


def restore(plugin: FilesystemDirectoryPlugin, context: RestoreContext) -> dict[str, Any]:
    """Restore one directory from the checkpoint; PluginError with the reason on any refusal."""
    overwrite = context.parameters.get("overwrite", True)
    if not isinstance(overwrite, bool):
        raise PluginError("parameter overwrite must be true or false")
    bank = context.bank
    prefix = context.prefix.strip("/")
    try:
        manifest = bank.read_manifest(context.checkpoint_id)
        siblings = _checkpoint_directories(manifest.meta, context.resource)
        saved_infos = _saved_infos(manifest.meta)
        saved_infos.setdefault(context.resource.id, context.saved_info or {})
        destinations = resolve_destinations(
            plugin, project_id=context.project_id, target=context.target, resources=siblings, saved_infos=saved_infos
        )
        destination = destinations[context.resource.id]
        if os.path.lexists(destination.path) and not os.path.isdir(destination.path):
            raise PluginError(f"the destination {destination.path} exists and is not a directory")
        scan = _scan(manifest, prefix, destination.path, overwrite=overwrite)

        def progress(p: Progress) -> None:
            if context.on_progress:
                context.on_progress(Progress(p.bytes_done, scan.bytes, p.items_done, scan.items))

        report = bank.restore_tree(context.checkpoint_id, destination.path, prefix=prefix, on_progress=progress)
        if scan.root is not None and not destination.is_declared_root:
            set_directory_metadata(destination.path, scan.root)
        if context.on_progress:  # the root directory's own item (the bank's restore skips the prefix itself)
            context.on_progress(Progress(report.bytes, scan.bytes, scan.items, scan.items))
    except BankError as exc:
        raise PluginError(str(exc)) from None
    except OSError as exc:
        raise PluginError(f"cannot write the restored tree: {exc.strerror or exc} ({exc.filename or ''})".strip()) from None
    return {
        "path": destination.path,
        "in_place": destination.in_place,
        "files": report.files,
        "dirs": report.dirs,
        "symlinks": report.symlinks,
        "bytes": report.bytes,
    }


def _checkpoint_directories(meta: dict, resource: Instance) -> list[Instance]:
    """The checkpoint's directories (from the manifest's plan snapshot); at least ``resource``."""
    plan = (meta.get("checkpoint") or {}).get("protection_plan") or {}
    found: list[Instance] = []
    for raw in plan.get("resources") or []:
        if isinstance(raw, dict) and raw.get("type") == FILESYSTEM_DIRECTORY and raw.get("id"):
            found.append(
                Instance(id=raw["id"], type=FILESYSTEM_DIRECTORY, name=raw.get("name") or "", extra_info=raw.get("extra_info"))
            )
    if not any(r.id == resource.id for r in found):
        found = [resource]
    return found


def _saved_infos(meta: dict) -> dict[str, dict]:
    checkpoint = meta.get("checkpoint") or {}
    raw = checkpoint.get("saved_info") or checkpoint.get("resources_saved_info") or {}
    result: dict[str, dict] = {}
    for key, value in raw.items() if isinstance(raw, dict) else ():
        if isinstance(value, dict):
            result[key.partition("#")[2] or key] = value
    return result


# --- verify ------------------------------------------------------------------------------
def verify(plugin: FilesystemDirectoryPlugin, context: VerifyContext) -> dict[str, Any]:
    """Fetch and authenticate every chunk of every item of the directory; PluginError naming damaged items."""
    bank = context.bank
    prefix = context.prefix.strip("/")
    damaged: dict[str, str] = {}
    counts = {"files": 0, "dirs": 0, "symlinks": 0, "bytes": 0, "chunks": 0}
    with bank_reading(bank) as lookup:
        manifest = bank.read_manifest(context.checkpoint_id, lookup)
        selected = [item for item in manifest.items() if item.path == prefix or item.path.startswith(prefix + "/")]
        if not selected:
            raise PluginError("the checkpoint holds no data for this directory")
        total_bytes = sum(item.size for item in selected if item.type in (TYPE_FILE, TYPE_STREAM))
        progress = Progress(0, total_bytes, 0, len(selected))
        received: dict[str, int] = {}

        def name_of(item: Item) -> str:
            return item.path[len(prefix) + 1 :] if item.path != prefix else "."

        def events():
            for item in selected:
                if item.type in (TYPE_FILE, TYPE_STREAM):
                    for index, (cid, size) in enumerate(item.chunks):
                        yield ("chunk", (item, index, size), cid)
                yield ("mark", item)

        with ThreadPoolExecutor(bank.workers, thread_name_prefix="bank-verify") as pool:
            for kind, tag, *rest in fetch_ordered(bank, events(), lookup, pool, window=bank.workers * 2):
                if kind == "chunk":
                    item, index, size = tag
                    data = rest[0]
                    counts["chunks"] += 1
                    if isinstance(data, Exception):
                        damaged.setdefault(name_of(item), str(data))
                    elif len(data) != size:
                        damaged.setdefault(name_of(item), f"chunk {index} holds {len(data)} bytes, {size} expected")
                    else:
                        received[item.path] = received.get(item.path, 0) + size
                        progress.bytes_done += size
                    continue
                item = tag
                if item.type in (TYPE_FILE, TYPE_STREAM):
                    counts["files"] += 1
                    counts["bytes"] += item.size
                    if name_of(item) not in damaged and received.get(item.path, 0) != item.size:
                        damaged[name_of(item)] = f"holds {received.get(item.path, 0)} bytes, the record says {item.size}"
                    received.pop(item.path, None)
                elif item.type == TYPE_DIR:
                    counts["dirs"] += 1
                elif item.type == TYPE_SYMLINK:
                    counts["symlinks"] += 1
                progress.items_done += 1
                if context.on_progress:
                    context.on_progress(progress)
    if damaged:
        shown = "; ".join(f"{name!r}: {reason}" for name, reason in list(damaged.items())[:MAX_REPORTED])
        more = f" (and {len(damaged) - MAX_REPORTED} more)" if len(damaged) > MAX_REPORTED else ""
        raise PluginError(f"{len(damaged)} damaged item(s): {shown}{more}")
    return counts
