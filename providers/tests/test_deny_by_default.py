"""Deny by default: a declared source or restore target is visible only to the projects it names."""
from __future__ import annotations

import os

import pytest

from plans.models import Plan
from providers.plugins.filesystem import directory_id
from providers.testing import provider_document, write_provider_file

FS = "Filesystem::Directory"
DEFAULT_PROVIDER = "6659007d-6f66-4a0f-9cb4-17d6aded0bb9"


@pytest.fixture
def default_provider_for_owner(owner, settings, tmp_path):
    """The shipped default provider with one KARBOR_FS_SOURCES directory, named for the owner's project only."""
    source, target = tmp_path / "www", tmp_path / "restore"
    source.mkdir()
    target.mkdir()
    (source / "index.html").write_text("<h1>hi</h1>")
    settings.KARBOR_BANK_DIR = tmp_path / "bank"
    settings.KARBOR_FS_SOURCES = [str(source)]
    settings.KARBOR_FS_RESTORE_TARGETS = [str(target)]
    settings.KARBOR_FS_PROJECTS = [owner.project_id]
    return directory_id(os.path.realpath(source))


def plan_with(instance_id: str) -> dict:
    return {"plan": {"name": "web", "provider_id": DEFAULT_PROVIDER, "parameters": {},
                     "resources": [{"id": instance_id, "type": FS, "name": "www"}]}}


def test_default_source_is_invisible_to_a_second_project(owner, stranger, default_provider_for_owner):
    instance_id = default_provider_for_owner
    listed = owner.client.get(owner.url(f"protectables/{FS}/instances"))
    assert [i["id"] for i in listed.json()["instances"]] == [instance_id]
    assert owner.client.post(owner.url("plans"), plan_with(instance_id), format="json").status_code == 200

    theirs = stranger.client.get(stranger.url(f"protectables/{FS}/instances"))
    assert theirs.status_code == 200 and theirs.json()["instances"] == []
    assert stranger.client.get(stranger.url(f"protectables/{FS}/instances/{instance_id}")).status_code == 404
    refused = stranger.client.post(stranger.url("plans"), plan_with(instance_id), format="json")
    assert 400 <= refused.status_code < 500
    assert not Plan.objects.filter(project_id=stranger.project_id).exists()


def test_default_source_without_fs_projects_is_invisible_to_everyone(owner, default_provider_for_owner, settings):
    settings.KARBOR_FS_PROJECTS = []
    listed = owner.client.get(owner.url(f"protectables/{FS}/instances"))
    assert listed.status_code == 200 and listed.json()["instances"] == []
    refused = owner.client.post(owner.url("plans"), plan_with(default_provider_for_owner), format="json")
    assert 400 <= refused.status_code < 500


def test_provider_file_entry_without_projects_is_visible_to_no_project(owner, provider_dir, tmp_path, caplog):
    source, target = tmp_path / "data", tmp_path / "restore"
    source.mkdir()
    target.mkdir()
    write_provider_file(
        provider_dir,
        provider_document(
            provider_id="a7a1c0de-0000-4000-8000-00000000f5f5", name="no projects", bank_path=tmp_path / "bank",
            sources=[{"name": "data", "path": str(source)}], restore_targets=[{"path": str(target)}],
        ),
    )
    listed = owner.client.get(owner.url(f"protectables/{FS}/instances"))
    assert listed.status_code == 200 and listed.json()["instances"] == []
    assert "declares no projects: it is visible to no project" in caplog.text
