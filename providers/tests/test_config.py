"""Provider files: loading, ${VAR} expansion, the shipped default, and clear errors for bad files."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError

from providers import registry
from providers.checks import provider_files_check
from providers.config import load_provider_file
from providers.plugins import register_plugin, resolve_plugin
from providers.plugins.filesystem import FilesystemDirectoryPlugin
from providers.testing import provider_document, write_provider_file

PID = "0b7a3b4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
DEFAULT_ID = "6659007d-6f66-4a0f-9cb4-17d6aded0bb9"


def write(directory: Path, text: str, name: str = "p.yaml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def env_sources(settings, tmp_path, projects: list[str]) -> tuple[Path, Path]:
    """One KARBOR_FS_SOURCES and one KARBOR_FS_RESTORE_TARGETS directory, for ``projects``."""
    source, target = tmp_path / "src", tmp_path / "target"
    source.mkdir()
    target.mkdir()
    settings.KARBOR_BANK_DIR = tmp_path / "bank"
    settings.KARBOR_FS_SOURCES = [str(source)]
    settings.KARBOR_FS_RESTORE_TARGETS = [str(target)]
    settings.KARBOR_FS_PROJECTS = projects
    return source, target


def test_shipped_default_provider_uses_bank_dir_and_env_sources(settings, tmp_path):
    source, target = env_sources(settings, tmp_path, ["demo"])
    provider = registry.get_registry().get(DEFAULT_ID)
    assert provider.name == "Local file system provider"
    assert provider.bank.type == "local"
    assert provider.bank.path == tmp_path / "bank"
    plugin = provider.plugins["Filesystem::Directory"]
    instances = plugin.list_instances(project_id="demo", parameters={})
    assert [i.extra_info["path"] for i in instances] == [str(source.resolve())]
    assert plugin.allowed_restore_targets(project_id="demo") == [target]
    # Deny by default: a project KARBOR_FS_PROJECTS does not name sees neither.
    assert plugin.list_instances(project_id="another-project", parameters={}) == []
    assert plugin.allowed_restore_targets(project_id="another-project") == []


def test_shipped_default_provider_sources_are_visible_to_no_project_without_fs_projects(settings, tmp_path):
    env_sources(settings, tmp_path, [])
    plugin = registry.get_registry().get(DEFAULT_ID).plugins["Filesystem::Directory"]
    for project in ("demo", "any-project"):
        assert plugin.list_instances(project_id=project, parameters={}) == []
        assert plugin.allowed_restore_targets(project_id=project) == []


def test_shipped_default_provider_star_opens_env_sources_to_every_project(settings, tmp_path):
    env_sources(settings, tmp_path, ["*"])
    plugin = registry.get_registry().get(DEFAULT_ID).plugins["Filesystem::Directory"]
    assert len(plugin.list_instances(project_id="any-project", parameters={})) == 1


def test_env_expansion_with_default_and_environment(provider_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_PROVIDER_NAME", "From the environment")
    write(
        provider_dir,
        f"""
id: {PID}
name: ${{TEST_PROVIDER_NAME}}
description: bank in ${{TEST_UNSET_VARIABLE:-/fallback}}
bank: {{type: local, path: "${{TEST_UNSET_VARIABLE:-{tmp_path}/bank}}"}}
plugins: {{}}
""",
    )
    provider = registry.reload().get(PID)
    assert provider.name == "From the environment"
    assert provider.description == "bank in /fallback"
    assert provider.bank.path == tmp_path / "bank"


def test_unset_variable_without_default_names_file_and_key(provider_dir):
    path = write(provider_dir, f"id: {PID}\nname: x\nbank: {{type: local, path: '${{TEST_NOT_SET_AT_ALL}}'}}\nplugins: {{}}\n")
    with pytest.raises(ImproperlyConfigured) as excinfo:
        registry.reload()
    assert str(path) in str(excinfo.value)
    assert "bank.path" in str(excinfo.value)
    assert "TEST_NOT_SET_AT_ALL" in str(excinfo.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id: [unclosed", "invalid YAML"),
        ("- just\n- a list\n", "mapping"),
        (f"id: {PID}\nbank: {{type: local, path: /b}}\nplugins: {{}}\n", "'name' is a required property"),
        ("id: not-a-uuid\nname: x\nbank: {type: local, path: /b}\nplugins: {}\n", "id: 'not-a-uuid' is not a valid UUID"),
        (f"id: {PID}\nname: x\nbank: {{type: ftp}}\nplugins: {{}}\n", "bank.type"),
        (f"id: {PID}\nname: x\nbank: {{type: local}}\nplugins: {{}}\n", "'path' is a required property"),
        (f"id: {PID}\nname: x\nbank: {{type: local, path: rel/dir}}\nplugins: {{}}\n", "bank.path"),
        (f"id: {PID}\nname: x\nbank: {{type: s3, bucket: bk, secret_key: plain}}\nplugins: {{}}\n", "secret_key"),
        (f"id: {PID}\nname: x\nbank: {{type: local, path: /b}}\nplugins: {{}}\ncolour: red\n", "colour"),
        (
            f"id: {PID}\nname: x\nbank: {{type: local, path: /b}}\nplugins:\n  No::Such::Type: {{plugin: filesystem}}\n",
            "plugins.No::Such::Type: unknown resource type",
        ),
        (
            f"id: {PID}\nname: x\nbank: {{type: local, path: /b}}\nplugins:\n  Filesystem::Directory: {{plugin: nope}}\n",
            "plugins.Filesystem::Directory.plugin: unknown plugin 'nope'",
        ),
        (
            f"id: {PID}\nname: x\nbank: {{type: local, path: /b}}\n"
            "plugins:\n  Filesystem::Directory: {plugin: no.such.module.Plugin}\n",
            "cannot import plugin",
        ),
        (
            f"id: {PID}\nname: x\nbank: {{type: local, path: /b}}\n"
            "plugins:\n  S3::Bucket: {plugin: filesystem}\n",
            "serves Filesystem::Directory, not S3::Bucket",
        ),
        (
            f"id: {PID}\nname: x\nbank: {{type: local, path: /b}}\nplugins:\n  Filesystem::Directory:\n"
            "    plugin: filesystem\n    options: {sources: [{name: a, path: relative/path}]}\n",
            "plugins.Filesystem::Directory.options.sources.0.path",
        ),
        (
            f"id: {PID}\nname: x\nbank: {{type: local, path: /b}}\nplugins:\n  Filesystem::Directory:\n"
            "    plugin: filesystem\n    options: {sources: [{name: a, path: /x, max_depth: 0}]}\n",
            "plugins.Filesystem::Directory.options.sources.0.max_depth",
        ),
        (
            f"id: {PID}\nname: x\nbank: {{type: local, path: /b}}\nplugins:\n  Filesystem::Directory:\n"
            "    plugin: filesystem\n    options: {unknown_option: 1}\n",
            "unknown_option",
        ),
    ],
)
def test_bad_provider_file_is_refused_naming_file_and_key(provider_dir, text, expected):
    path = write(provider_dir, text)
    with pytest.raises(ImproperlyConfigured) as excinfo:
        registry.reload()
    assert str(path) in str(excinfo.value)
    assert expected in str(excinfo.value)


def test_system_check_reports_bad_provider_file(provider_dir):
    path = write(provider_dir, "id: [broken")
    errors = provider_files_check()
    assert [error.id for error in errors] == ["providers.E001"]
    assert str(path) in errors[0].msg


def test_system_check_is_clean_for_shipped_config():
    assert provider_files_check() == []


def test_duplicate_provider_ids_are_refused(provider_dir, tmp_path):
    doc = provider_document(provider_id=PID, name="one", bank_path=tmp_path / "b")
    write_provider_file(provider_dir, doc, "a.yaml")
    write_provider_file(provider_dir, {**doc, "name": "two"}, "b.yaml")
    with pytest.raises(ImproperlyConfigured, match="already declared in .*a.yaml"):
        registry.reload()


def test_disabled_provider_is_loaded_but_not_served(provider_dir, tmp_path):
    write_provider_file(provider_dir, provider_document(provider_id=PID, name="off", bank_path=tmp_path, enabled=False))
    loaded = registry.reload()
    assert [p.id for p in loaded.all_providers()] == [PID]
    assert loaded.providers() == []
    assert loaded.find(PID) is None


def test_only_yaml_files_are_read_and_missing_dir_is_empty(settings, tmp_path):
    settings.KARBOR_PROVIDER_CONFIG_DIR = tmp_path / "does-not-exist"
    assert registry.get_registry().providers() == []
    settings.KARBOR_PROVIDER_CONFIG_DIR = tmp_path
    (tmp_path / "notes.txt").write_text("id: [not yaml we read")
    assert registry.get_registry().providers() == []


def test_registry_is_cached_until_reload(provider_dir, tmp_path):
    first = registry.get_registry()
    assert registry.get_registry() is first
    write_provider_file(provider_dir, provider_document(provider_id=PID, name="new", bank_path=tmp_path))
    assert registry.get_registry() is first
    assert registry.reload().find(PID).name == "new"


def test_s3_bank_reads_secrets_from_named_variables(provider_dir, monkeypatch):
    write(
        provider_dir,
        f"""
id: {PID}
name: s3
bank: {{type: s3, endpoint_url: "http://127.0.0.1:9000", bucket: karbor, prefix: team-a, region: us-east-1,
        access_key_env: TEST_S3_KEY, secret_key_env: TEST_S3_SECRET, passphrase_env: TEST_BANK_PASS}}
plugins: {{}}
""",
    )
    monkeypatch.setenv("TEST_S3_KEY", "AKIA-test")
    monkeypatch.setenv("TEST_S3_SECRET", "s3cr3t")
    bank = registry.reload().get(PID).bank
    assert (bank.bucket, bank.prefix, bank.region, bank.endpoint_url) == ("karbor", "team-a", "us-east-1", "http://127.0.0.1:9000")
    assert bank.access_key() == "AKIA-test"
    assert bank.secret_key() == "s3cr3t"
    assert bank.passphrase() is None
    monkeypatch.setenv("TEST_BANK_PASS", "correct horse")
    assert bank.passphrase() == "correct horse"


def test_plugin_is_found_by_dotted_path_and_short_name():
    dotted = "providers.plugins.filesystem.FilesystemDirectoryPlugin"
    assert resolve_plugin(dotted) is FilesystemDirectoryPlugin
    assert resolve_plugin("filesystem") is FilesystemDirectoryPlugin
    register_plugin("fs-alias-for-test", dotted)
    assert resolve_plugin("fs-alias-for-test") is FilesystemDirectoryPlugin


def test_a_class_that_is_not_a_plugin_is_refused():
    with pytest.raises(ImproperlyConfigured, match="not a subclass"):
        resolve_plugin("pathlib.Path")


def test_load_provider_file_reports_unreadable_file(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="cannot read provider file"):
        load_provider_file(tmp_path / "missing.yaml")


@pytest.mark.django_db
def test_sync_providers_command_mirrors_files(provider_dir, tmp_path):
    from providers.models import Provider

    write_provider_file(provider_dir, provider_document(provider_id=PID, name="mirrored", bank_path=tmp_path / "b"))
    Provider.objects.create(
        id="ffffffff-ffff-4fff-8fff-ffffffffffff", name="stale", bank_type="local", bank_location="/x",
        source_file="/gone.yaml", synced_at="2020-01-01T00:00:00Z",
    )
    call_command("sync_providers", stdout=open("/dev/null", "w"))
    row = Provider.objects.get()
    assert (row.id, row.name, row.bank_type, row.resource_types) == (PID, "mirrored", "local", "Filesystem::Directory")
    assert row.plugins == {"Filesystem::Directory": "providers.plugins.filesystem.FilesystemDirectoryPlugin"}
    assert set(row.extended_info_schema) == {"options_schema", "restore_schema", "saved_info_schema"}


@pytest.mark.django_db
def test_sync_providers_command_fails_on_bad_file_and_keeps_table(provider_dir):
    from providers.models import Provider

    write(provider_dir, "id: [broken")
    with pytest.raises(CommandError, match="invalid YAML"):
        call_command("sync_providers")
    assert Provider.objects.count() == 0


def test_admin_changelist_shows_configured_providers(admin_client, provider_dir, tmp_path):
    write_provider_file(provider_dir, provider_document(provider_id=PID, name="Shown in admin", bank_path=tmp_path))
    response = admin_client.get("/admin/providers/provider/")
    assert response.status_code == 200
    assert b"Shown in admin" in response.content
    detail = admin_client.get(f"/admin/providers/provider/{PID}/change/")
    assert detail.status_code == 200
    assert b"options_schema" in detail.content
