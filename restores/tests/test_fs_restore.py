"""Destination rules of Filesystem::Directory restores (providers/plugins/fs_restore.py)."""
from __future__ import annotations

import os

import pytest
from django.core.exceptions import ImproperlyConfigured

from providers.plugins.base import Instance, PluginError
from providers.plugins.filesystem import FilesystemDirectoryPlugin, directory_id
from providers.plugins.fs_restore import resolve_destinations
from providers.testing import OWNER_PROJECT, STRANGER_PROJECT
from restores.tests.kit import FS


def resource(path, name=None) -> Instance:
    real = os.path.realpath(path)
    return Instance(id=directory_id(real), type=FS, name=name or os.path.basename(real), extra_info={"path": real})


def test_a_symlink_that_stays_inside_the_target_is_followed(world):
    (world.target / "real").mkdir()
    (world.target / "alias").symlink_to(world.target / "real", target_is_directory=True)
    (destination,) = resolve_destinations(
        world.plugin(), project_id=OWNER_PROJECT, target=f"{world.target}/alias/x", resources=[resource(world.app)]
    ).values()
    assert destination.path == str(world.target / "real" / "x") and not destination.in_place


def test_several_directories_with_the_same_name_get_the_id_appended(world):
    one, two = world.app / "sub", world.shared / "sub"
    two.mkdir()
    resources = [resource(one), resource(two)]
    destinations = resolve_destinations(world.plugin(), project_id=OWNER_PROJECT, target=str(world.target), resources=resources)
    names = sorted(os.path.basename(d.path) for d in destinations.values())
    assert names == sorted(f"sub-{r.id[:8]}" for r in resources)


def test_in_place_needs_a_source_the_project_still_sees(world):
    with pytest.raises(PluginError, match="no longer inside a source this project may use"):
        resolve_destinations(world.plugin(), project_id=STRANGER_PROJECT, target=None, resources=[resource(world.app)])
    (destination,) = resolve_destinations(
        world.plugin(), project_id=OWNER_PROJECT, target="", resources=[resource(world.app)]
    ).values()
    assert destination.in_place and destination.path == os.path.realpath(world.app)


def test_missing_target_root_and_no_targets_are_refused(world, tmp_path):
    plugin = FilesystemDirectoryPlugin({"restore_targets": [{"path": str(tmp_path / "gone"), "projects": [OWNER_PROJECT]}]})
    with pytest.raises(PluginError, match="does not exist"):
        resolve_destinations(plugin, project_id=OWNER_PROJECT, target=str(tmp_path / "gone" / "x"), resources=[resource(world.app)])
    with pytest.raises(PluginError, match="declares no restore target directory"):
        resolve_destinations(FilesystemDirectoryPlugin({}), project_id=OWNER_PROJECT, target="/x", resources=[resource(world.app)])


def test_allow_restore_in_place_option_is_validated_and_published_schema_defaults_overwrite_true(world):
    with pytest.raises(ImproperlyConfigured, match="allow_restore_in_place"):
        FilesystemDirectoryPlugin({"allow_restore_in_place": "no"})
    schema = world.provider.extended_info_schema()["restore_schema"][FS]
    assert schema["properties"]["overwrite"]["default"] is True
