"""Test helpers: provider files in a tmp dir, and a Filesystem provider over tmp directories.

Import the fixtures into an app's ``tests/conftest.py``::

    from providers.testing import fs_provider, provider_dir  # noqa: F401
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from providers.plugins.filesystem import directory_id

FS_PROVIDER_ID = "a7a1c0de-0000-4000-8000-00000000f5f5"
OWNER_PROJECT = "e486a2f49695423ca9c47e589b948108"
STRANGER_PROJECT = "5d3242420cb641ac840cd4ae37af0f18"


def write_provider_file(directory: Path, data: dict[str, Any], filename: str | None = None) -> Path:
    """Write one provider file (YAML) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (filename or f"{data.get('id', 'provider')}.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def provider_document(
    *,
    provider_id: str,
    name: str,
    bank_path: Path,
    sources: list[dict[str, Any]] | None = None,
    restore_targets: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    options: dict[str, Any] = {"sources": sources or []}
    if restore_targets is not None:
        options["restore_targets"] = restore_targets
    return {
        "id": provider_id,
        "name": name,
        "description": f"{name} (test)",
        "enabled": True,
        "bank": {"type": "local", "path": str(bank_path)},
        "plugins": {"Filesystem::Directory": {"plugin": "filesystem", "options": options}},
        **extra,
    }


@pytest.fixture
def provider_dir(tmp_path, settings) -> Path:
    """An empty provider directory the registry reads instead of the shipped one."""
    directory = tmp_path / "providers.d"
    directory.mkdir()
    settings.KARBOR_PROVIDER_CONFIG_DIR = directory
    settings.KARBOR_FS_SOURCES = []
    settings.KARBOR_FS_RESTORE_TARGETS = []
    settings.KARBOR_FS_PROJECTS = []
    return directory


@dataclass
class FsLayout:
    """The directories behind ``fs_provider`` and their instance ids."""

    provider_id: str
    root: Path
    bank: Path
    paths: dict[str, Path] = field(default_factory=dict)

    def id_of(self, key: str) -> str:
        return directory_id(os.path.realpath(self.paths[key]))


@pytest.fixture
def fs_provider(provider_dir, tmp_path) -> FsLayout:
    """A Filesystem provider over tmp dirs.

    ``data`` (every project; subdirectories to depth 2: a, a/deep, b; ``data/escape`` is a
    symlink out of the source), ``private`` (the owner's project only), ``theirs`` (the
    stranger's project only), ``gone`` (every project; declared but missing), restore target ``restore``
    (the owner's project only). Entries name their projects: one without is visible to none.
    """
    root = tmp_path / "fs"
    paths = {
        "data": root / "data",
        "a": root / "data" / "a",
        "deep": root / "data" / "a" / "deep",
        "deeper": root / "data" / "a" / "deep" / "deeper",
        "b": root / "data" / "b",
        "private": root / "private",
        "theirs": root / "theirs",
        "outside": root / "outside",
        "restore": root / "restore",
    }
    for path in paths.values():
        path.mkdir(parents=True, exist_ok=True)
    (paths["data"] / "file.txt").write_text("hello")
    (paths["data"] / "escape").symlink_to(paths["outside"], target_is_directory=True)
    paths["gone"] = root / "gone"
    layout = FsLayout(provider_id=FS_PROVIDER_ID, root=root, bank=tmp_path / "bank", paths=paths)
    write_provider_file(
        provider_dir,
        provider_document(
            provider_id=FS_PROVIDER_ID,
            name="Test file system provider",
            bank_path=layout.bank,
            sources=[
                {"name": "data", "path": str(paths["data"]), "projects": ["*"], "subdirectories": True, "max_depth": 2},
                {"name": "private", "path": str(paths["private"]), "projects": [OWNER_PROJECT]},
                {"name": "theirs", "path": str(paths["theirs"]), "projects": [STRANGER_PROJECT]},
                {"name": "gone", "path": str(paths["gone"]), "projects": ["*"]},
            ],
            restore_targets=[{"path": str(paths["restore"]), "projects": [OWNER_PROJECT]}],
        ),
    )
    return layout
