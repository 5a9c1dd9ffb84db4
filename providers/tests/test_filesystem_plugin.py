"""The Filesystem::Directory plugin over real tmp directories."""
from __future__ import annotations

import logging

import pytest
from django.core.exceptions import ImproperlyConfigured

from karbor_site.errors import NotFound
from providers.plugins.filesystem import FilesystemDirectoryPlugin, directory_id
from providers.registry import get_registry
from providers.testing import OWNER_PROJECT, STRANGER_PROJECT


def plugin(fs_provider) -> FilesystemDirectoryPlugin:
    return get_registry().get(fs_provider.provider_id).plugins["Filesystem::Directory"]


def names(instances) -> list[str]:
    return [instance.name for instance in instances]


def test_lists_sources_and_subdirectories_to_max_depth(fs_provider):
    instances = plugin(fs_provider).list_instances(project_id=OWNER_PROJECT, parameters={})
    assert names(instances) == ["data", "data/a", "data/b", "data/a/deep", "private"]
    by_name = {i.name: i for i in instances}
    assert by_name["data/a/deep"].extra_info == {"path": str(fs_provider.paths["deep"].resolve()), "source": "data"}
    assert by_name["data/a/deep"].type == "Filesystem::Directory"
    assert all(i.dependent_resources == [] for i in instances)


def test_instance_ids_are_uuid5_of_real_path_and_stable(fs_provider):
    first = plugin(fs_provider).list_instances(project_id=OWNER_PROJECT, parameters={})
    again = FilesystemDirectoryPlugin(plugin(fs_provider).options).list_instances(project_id=OWNER_PROJECT, parameters={})
    assert [i.id for i in first] == [i.id for i in again]
    assert first[0].id == fs_provider.id_of("data") == directory_id(fs_provider.paths["data"].resolve())
    assert "/" not in first[0].id and len(first[0].id) == 36


def test_symlink_out_of_a_source_is_not_listed(fs_provider):
    instances = plugin(fs_provider).list_instances(project_id=OWNER_PROJECT, parameters={})
    outside = str(fs_provider.paths["outside"].resolve())
    assert all(not i.extra_info["path"].startswith(outside) for i in instances)
    assert "data/escape" not in names(instances)
    with pytest.raises(NotFound):
        plugin(fs_provider).show_instance(project_id=OWNER_PROJECT, instance_id=fs_provider.id_of("outside"), parameters={})


def test_project_sees_only_its_own_and_shared_sources(fs_provider):
    stranger = names(plugin(fs_provider).list_instances(project_id=STRANGER_PROJECT, parameters={}))
    assert "theirs" in stranger and "private" not in stranger and "data" in stranger
    owner = names(plugin(fs_provider).list_instances(project_id=OWNER_PROJECT, parameters={}))
    assert "theirs" not in owner


def test_show_instance_of_another_projects_source_is_not_found(fs_provider):
    fs = plugin(fs_provider)
    assert fs.show_instance(project_id=OWNER_PROJECT, instance_id=fs_provider.id_of("private"), parameters={}).name == "private"
    with pytest.raises(NotFound):
        fs.show_instance(project_id=STRANGER_PROJECT, instance_id=fs_provider.id_of("private"), parameters={})


def test_missing_source_is_skipped_with_a_warning(fs_provider, caplog):
    with caplog.at_level(logging.WARNING, logger="providers.plugins.filesystem"):
        instances = plugin(fs_provider).list_instances(project_id=OWNER_PROJECT, parameters={})
    assert "gone" not in names(instances)
    assert "'gone'" in caplog.text and "missing" in caplog.text


def test_source_removed_after_start_disappears(fs_provider):
    import shutil

    shutil.rmtree(fs_provider.paths["b"])
    assert "data/b" not in names(plugin(fs_provider).list_instances(project_id=OWNER_PROJECT, parameters={}))


def test_restore_targets_follow_project_visibility(fs_provider):
    fs = plugin(fs_provider)
    assert fs.allowed_restore_targets(project_id=OWNER_PROJECT) == [fs_provider.paths["restore"]]
    assert fs.allowed_restore_targets(project_id=STRANGER_PROJECT) == []


def test_source_without_subdirectories_lists_only_itself(tmp_path):
    (tmp_path / "only" / "child").mkdir(parents=True)
    fs = FilesystemDirectoryPlugin({"sources": [{"name": "only", "path": str(tmp_path / "only"), "projects": ["p"]}]})
    assert names(fs.list_instances(project_id="p", parameters={})) == ["only"]


def test_restore_target_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImproperlyConfigured, match=r"options.restore_targets.0.path: .* is not a directory"):
        FilesystemDirectoryPlugin({"restore_targets": [{"path": str(tmp_path / "file")}]})


def test_duplicate_source_names_are_refused(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="duplicate source name 'x'"):
        FilesystemDirectoryPlugin({"sources": [{"name": "x", "path": "/a"}, {"name": "x", "path": "/b"}]})


def test_relative_setting_source_is_refused(settings):
    settings.KARBOR_FS_SOURCES = ["relative/dir"]
    with pytest.raises(ImproperlyConfigured, match="KARBOR_FS_SOURCES.0"):
        FilesystemDirectoryPlugin({"include_settings_sources": True})


def test_schemas_have_titles_and_descriptions():
    for schema in (
        FilesystemDirectoryPlugin.options_schema,
        FilesystemDirectoryPlugin.restore_schema,
        FilesystemDirectoryPlugin.saved_info_schema,
    ):
        assert schema["title"] and schema["description"]
        for prop in schema["properties"].values():
            assert prop["title"] and prop["description"]
    assert set(FilesystemDirectoryPlugin.options_schema["properties"]) == {"exclude", "follow_symlinks"}
    assert set(FilesystemDirectoryPlugin.restore_schema["properties"]) == {"overwrite"}
    assert set(FilesystemDirectoryPlugin.saved_info_schema["properties"]) == {"files", "bytes", "manifest"}
