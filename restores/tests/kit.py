"""Test kit for restores and verifications: a Filesystem provider on tmp dirs, real trees, and
checkpoints written to the provider's bank exactly per the contract of ``protection/banks.py``
(manifest id = checkpoint id, items under ``resource_prefix``, meta ``{"checkpoint": {...}}``)
plus the catalog row — independent of the protect flow.
"""
from __future__ import annotations

import hashlib
import io
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from karbor_site.db import new_uuid
from protection.banks import bank_for_provider, forget_banks, resource_prefix
from protection.models import Checkpoint
from providers.plugins.filesystem import directory_id
from providers.registry import get_registry
from providers.testing import OWNER_PROJECT, STRANGER_PROJECT, write_provider_file

FS = "Filesystem::Directory"
PROVIDER_ID = "a7a1c0de-0000-4000-8000-0000000000aa"
LOCKED_PROVIDER_ID = "a7a1c0de-0000-4000-8000-0000000000bb"  # allow_restore_in_place: false
UNICODE_NAME = "ünïcødé-файл ✓.txt"


def make_tree(root: Path) -> Path:
    """Small, large, empty and unicode-named files, modes, nested dirs, relative/absolute/dangling links."""
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "small.txt").write_text("hello\n")
    (root / "empty.txt").write_bytes(b"")
    (root / "large.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 123))
    (root / UNICODE_NAME).write_text("unicode ✓\n", encoding="utf-8")
    (root / "sub" / "a.txt").write_text("a" * 5000)
    (root / "sub" / "deeper" / "b.txt").write_text("b")
    script = root / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    (root / "secret.txt").write_text("s")
    (root / "secret.txt").chmod(0o600)
    (root / "sub").chmod(0o750)
    (root / "link-to-small").symlink_to("small.txt")
    (root / "abs-link").symlink_to("/etc/hostname")
    (root / "dangling").symlink_to("no/such/file")
    os.utime(root / "small.txt", ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    return root


def snapshot(root: Path, *, with_root: bool = False) -> dict[str, tuple]:
    """relative path → (kind, mode, content digest or link target, mtime for files)."""
    found: dict[str, tuple] = {}
    if with_root:
        st = os.lstat(root)
        found["."] = ("dir", stat.S_IMODE(st.st_mode))
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            st = os.lstat(path)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", mode)
            else:
                found[rel] = ("file", mode, hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns)
    return found


@dataclass
class World:
    """The directories behind the test providers."""

    root: Path
    bank: Path
    app: Path  # source "app", owner project only
    shared: Path  # source "shared", every project
    theirs: Path  # source "theirs", the stranger's project only
    target: Path  # restore target of the owner's project
    their_target: Path  # restore target of the stranger's project
    outside: Path  # not declared anywhere
    checkpoints: list[str] = field(default_factory=list)

    @property
    def provider(self):
        return get_registry().get(PROVIDER_ID)

    def plugin(self, provider_id: str = PROVIDER_ID):
        return get_registry().get(provider_id).plugins[FS]

    def instance(self, path: Path, project_id: str = OWNER_PROJECT):
        return self.plugin().show_instance(project_id=project_id, instance_id=directory_id(os.path.realpath(path)), parameters={})


def _document(provider_id: str, name: str, world: World, **options: Any) -> dict[str, Any]:
    return {
        "id": provider_id,
        "name": name,
        "description": f"{name} (test)",
        "enabled": True,
        "bank": {"type": "local", "path": str(world.bank)},
        "plugins": {
            FS: {
                "plugin": "filesystem",
                "options": {
                    "sources": [
                        {"name": "app", "path": str(world.app), "projects": [OWNER_PROJECT], "subdirectories": True},
                        {"name": "shared", "path": str(world.shared), "projects": ["*"]},
                        {"name": "theirs", "path": str(world.theirs), "projects": [STRANGER_PROJECT]},
                    ],
                    "restore_targets": [
                        {"path": str(world.target), "projects": [OWNER_PROJECT]},
                        {"path": str(world.their_target), "projects": [STRANGER_PROJECT]},
                    ],
                    **options,
                },
            }
        },
    }


@pytest.fixture
def world(provider_dir, tmp_path, settings) -> World:
    """Two providers over one local bank: the normal one and one that forbids restores in place."""
    settings.KARBOR_FLOW_HEARTBEAT_INTERVAL = 3600  # the heartbeat thread never writes in plain db tests
    forget_banks()
    root = tmp_path / "fs"
    w = World(
        root=root,
        bank=tmp_path / "bank",
        app=root / "app",
        shared=root / "shared",
        theirs=root / "theirs",
        target=root / "restore",
        their_target=root / "their-restore",
        outside=root / "outside",
    )
    for path in (w.app, w.shared, w.theirs, w.target, w.their_target, w.outside):
        path.mkdir(parents=True)
    make_tree(w.app)
    (w.shared / "shared.txt").write_text("shared")
    (w.theirs / "theirs.txt").write_text("theirs")
    write_provider_file(provider_dir, _document(PROVIDER_ID, "Restore test provider", w))
    write_provider_file(provider_dir, _document(LOCKED_PROVIDER_ID, "No in-place provider", w, allow_restore_in_place=False))
    yield w
    forget_banks()


def write_checkpoint(
    world: World,
    paths: list[Path],
    *,
    project_id: str = OWNER_PROJECT,
    provider_id: str = PROVIDER_ID,
    status: str = "available",
    extra_items: dict[str, bytes] | None = None,
    before_commit=None,
) -> Checkpoint:
    """Write ``paths`` (directories of ``project_id``) into the bank as one checkpoint, and its catalog row.

    ``extra_items`` adds raw stream items (full item names) — how a hostile or broken bank is faked.
    """
    provider = get_registry().get(provider_id)
    bank = bank_for_provider(provider)
    checkpoint_id = new_uuid()
    resources, saved_info, statuses = [], {}, {}
    with bank.writer(manifest_id=checkpoint_id) as writer:
        for path in paths:
            instance = world.plugin(provider_id).show_instance(
                project_id=project_id, instance_id=directory_id(os.path.realpath(path)), parameters={}
            )
            key = f"{FS}#{instance.id}"
            before = writer.stats.files
            writer.add_tree(str(path), prefix=resource_prefix(FS, instance.id))
            resources.append({"id": instance.id, "type": FS, "name": instance.name, "extra_info": instance.extra_info})
            saved_info[key] = {"path": os.path.realpath(path), "files": writer.stats.files - before, "bytes": 0}
            statuses[key] = "available"
        for name, data in (extra_items or {}).items():
            writer.add_stream(name, io.BytesIO(data))
        if before_commit:
            before_commit(writer)
        plan = {"id": new_uuid(), "name": "restore test plan", "resources": resources}
        meta = {
            "id": checkpoint_id,
            "project_id": project_id,
            "provider_id": provider.id,
            "plan_id": plan["id"],
            "status": "available",
            "protection_plan": plan,
            "resource_graph": None,
            "resources_status": statuses,
            "resources_reason": {},
            "saved_info": saved_info,
            "extra_info": {"created_by": "manual"},
        }
        writer.commit(meta={"checkpoint": meta})
    checkpoint = Checkpoint.objects.create(
        id=checkpoint_id,
        project_id=project_id,
        provider_id=provider.id,
        plan_id=plan["id"],
        status=status,
        protection_plan=plan,
        resources_status=statuses,
        saved_info=saved_info,
        extra_info={"created_by": "manual"},
    )
    world.checkpoints.append(checkpoint_id)
    return checkpoint


def restore_body(checkpoint: Checkpoint, *, target: Any = None, parameters: Any = None, **extra: Any) -> dict:
    """The body python-karborclient sends (every key present, nulls included)."""
    body = {
        "provider_id": checkpoint.provider_id,
        "checkpoint_id": checkpoint.id,
        "restore_target": target,
        "restore_auth": None,
        "parameters": {} if parameters is None else parameters,
    }
    body.update(extra)
    return {"restore": body}
