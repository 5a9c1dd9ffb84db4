"""Helpers shared by the checkpoint tests: plans over the ``fs_provider`` directories, test trees."""
from __future__ import annotations

import filecmp
import os
import time
from pathlib import Path

from plans.models import Plan
from plans.services import plan_create
from providers.plugins.filesystem import FilesystemDirectoryPlugin
from providers.testing import FS_PROVIDER_ID, OWNER_PROJECT

FS = "Filesystem::Directory"


def make_plan(fs_provider, *, keys=("data",), project_id: str = OWNER_PROJECT, name: str = "nightly",
              parameters: dict | None = None) -> Plan:
    names = {"data": "data", "a": "data/a", "b": "data/b", "private": "private", "theirs": "theirs"}
    return plan_create(
        project_id=project_id,
        provider_id=FS_PROVIDER_ID,
        name=name,
        resources=[{"id": fs_provider.id_of(key), "type": FS, "name": names[key]} for key in keys],
        parameters=parameters or {},
    )


def fill_tree(root: Path, *, files: int = 20, size: int = 64 * 1024, seed: int = 1) -> int:
    """Write ``files`` files of pseudo-random bytes in nested directories; return the bytes written."""
    import random

    rng = random.Random(seed)
    total = 0
    for index in range(files):
        directory = root / f"dir{index % 4}" / f"sub{index % 3}"
        directory.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(size + index)
        (directory / f"file{index}.bin").write_bytes(data)
        total += len(data)
    (root / "notes.txt").write_text("small text file\n")
    os.symlink("notes.txt", root / "link-to-notes")
    return total


def trees_equal(left: Path, right: Path) -> bool:
    """Same names, types, link targets and file bytes, recursively."""
    comparison = filecmp.dircmp(left, right, ignore=[])
    if comparison.left_only or comparison.right_only or comparison.funny_files:
        return False
    for name in comparison.common_files:
        a, b = left / name, right / name
        if os.path.islink(a) or os.path.islink(b):
            if not (os.path.islink(a) and os.path.islink(b) and os.readlink(a) == os.readlink(b)):
                return False
        elif a.read_bytes() != b.read_bytes():
            return False
    return all(trees_equal(left / sub, right / sub) for sub in comparison.common_dirs)



class SlowDirectoryPlugin(FilesystemDirectoryPlugin):
    """``Filesystem::Directory`` that sleeps on every progress report (``KARBOR_TEST_SLOW_PROTECT_SECONDS``),
    so an end-to-end test can kill a worker in the middle of a protect without gigabytes of data."""

    def protect(self, context):
        delay = float(os.environ.get("KARBOR_TEST_SLOW_PROTECT_SECONDS", "0.05"))
        inner = context.on_progress

        def slow(progress):
            time.sleep(delay)
            if inner is not None:
                inner(progress)

        context.on_progress = slow
        return super().protect(context)
