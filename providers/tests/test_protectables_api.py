"""GET /protectables… (contract §2.5) over a Filesystem provider on tmp dirs."""
from __future__ import annotations

from urllib.parse import quote

import pytest

from providers.plugins.base import Instance, ProtectablePlugin
from providers.testing import OWNER_PROJECT, provider_document, write_provider_file

FS = "Filesystem::Directory"


class FakeVolumePlugin(ProtectablePlugin):
    """A protectable-only plugin for an OS type, with a parent, to check type routing and dependents."""

    resource_type = "OS::Cinder::Volume"
    parent_types = ("Filesystem::Directory",)

    def list_instances(self, *, project_id, parameters):
        return [Instance(id="vol-1", type=self.resource_type, name="volume one", extra_info={"availability_zone": "az1"})]

    def dependencies(self, *, project_id, instance):
        return [Instance(id=f"vol-of-{instance.name}", type=self.resource_type, name="attached")]


@pytest.fixture
def with_volume_plugin(fs_provider, provider_dir, tmp_path):
    doc = provider_document(
        provider_id="b0b0b0b0-0000-4000-8000-0000000000b0", name="volumes", bank_path=tmp_path / "vb"
    )
    doc["plugins"] = {
        "OS::Cinder::Volume": {"plugin": f"{__name__}.FakeVolumePlugin"},
        FS: {"plugin": "filesystem", "options": {"sources": [{"name": "data", "path": str(fs_provider.paths["data"]), "projects": ["*"]}]}},
    }
    write_provider_file(provider_dir, doc)
    return fs_provider


def test_type_list_is_a_list_under_a_singular_key(owner, fs_provider):
    response = owner.client.get(owner.url("protectables"))
    assert response.status_code == 200
    assert response.json() == {"protectable_type": [FS]}


def test_show_type_with_dependent_types(owner, with_volume_plugin):
    assert owner.client.get(owner.url("protectables")).json()["protectable_type"] == [FS, "OS::Cinder::Volume"]
    response = owner.client.get(owner.url(f"protectables/{FS}"))
    assert response.status_code == 200
    assert response.json() == {"protectable_type": {"name": FS, "dependent_types": ["OS::Cinder::Volume"]}}
    volume = owner.client.get(owner.url("protectables/OS::Cinder::Volume")).json()
    assert volume == {"protectable_type": {"name": "OS::Cinder::Volume", "dependent_types": []}}


def test_os_style_type_names_route_escaped_or_not(owner, with_volume_plugin):
    for path in ("protectables/OS::Cinder::Volume/instances", f"protectables/{quote('OS::Cinder::Volume')}/instances/"):
        response = owner.client.get(owner.url(path))
        assert response.status_code == 200, path
        assert [i["id"] for i in response.json()["instances"]] == ["vol-1"]
    shown = owner.client.get(owner.url("protectables/OS::Cinder::Volume/instances/vol-1")).json()["instance"]
    assert shown["extra_info"] == {"availability_zone": "az1"}


def test_unknown_type_is_400(owner, fs_provider):
    for path in ("protectables/OS::Nova::Server", "protectables/Nope/instances", "protectables/Nope/instances/x"):
        response = owner.client.get(owner.url(path))
        assert response.status_code == 400, path
        assert "Invalid protectable type provided" in response.json()["badRequest"]["message"]


def test_instances_of_the_project_with_karbor_shape(owner, fs_provider):
    response = owner.client.get(owner.url(f"protectables/{FS}/instances"), {"type": FS})
    assert response.status_code == 200
    body = response.json()
    assert body["instances_links"] == []
    assert [i["name"] for i in body["instances"]] == ["data", "data/a", "data/b", "data/a/deep", "private"]
    first = body["instances"][0]
    assert first == {
        "id": fs_provider.id_of("data"),
        "type": FS,
        "name": "data",
        "extra_info": {"path": str(fs_provider.paths["data"].resolve()), "source": "data"},
        "dependent_resources": [],
    }


def test_dependent_resources_come_from_child_plugins(owner, with_volume_plugin):
    body = owner.client.get(owner.url(f"protectables/{FS}/instances")).json()
    data = next(i for i in body["instances"] if i["name"] == "data")
    assert data["dependent_resources"] == [
        {"id": "vol-of-data", "type": "OS::Cinder::Volume", "name": "attached", "extra_info": None}
    ]
    # Two providers serve the same directory: it is listed once.
    assert [i["name"] for i in body["instances"]].count("data") == 1


def test_stranger_does_not_see_the_owners_private_source(owner, stranger, fs_provider):
    names = [i["name"] for i in stranger.client.get(stranger.url(f"protectables/{FS}/instances")).json()["instances"]]
    assert "private" not in names and "theirs" in names
    response = stranger.client.get(stranger.url(f"protectables/{FS}/instances/{fs_provider.id_of('private')}"))
    assert response.status_code == 404


def test_show_instance(owner, fs_provider):
    response = owner.client.get(owner.url(f"protectables/{FS}/instances/{fs_provider.id_of('a')}"))
    assert response.status_code == 200
    assert response.json()["instance"]["name"] == "data/a"


def test_show_unknown_instance_is_404(owner, fs_provider):
    response = owner.client.get(owner.url(f"protectables/{FS}/instances/00000000-0000-4000-8000-000000000000"))
    assert response.status_code == 404
    assert response.json()["itemNotFound"]["code"] == 404


@pytest.mark.parametrize("raw", ["[1, 2]", "'text'", "{'unclosed'", "42", "__import__('os')"])
def test_parameters_that_are_not_a_dict_are_400(owner, fs_provider, raw):
    response = owner.client.get(owner.url(f"protectables/{FS}/instances"), {"parameters": raw})
    assert response.status_code == 400
    assert "parameters" in response.json()["badRequest"]["message"]


@pytest.mark.parametrize("raw", ["{'name': 'ns:pod'}", '{"name": "x"}', "{}"])
def test_dict_parameters_are_accepted(owner, fs_provider, raw):
    response = owner.client.get(owner.url(f"protectables/{FS}/instances"), {"parameters": raw})
    assert response.status_code == 200
    show = owner.client.get(owner.url(f"protectables/{FS}/instances/{fs_provider.id_of('a')}"), {"parameters": raw})
    assert show.status_code == 200


@pytest.mark.parametrize("limit", ["0", "-3", "many"])
def test_bad_limit_is_400(owner, fs_provider, limit):
    response = owner.client.get(owner.url(f"protectables/{FS}/instances"), {"limit": limit})
    assert response.status_code == 400
    assert "limit" in response.json()["badRequest"]["message"]


def test_limit_and_marker_page_instances(owner, fs_provider):
    url = owner.url(f"protectables/{FS}/instances")
    first = owner.client.get(url, {"limit": 2}).json()
    assert [i["name"] for i in first["instances"]] == ["data", "data/a"]
    href = first["instances_links"][0]["href"]
    assert f"/v1/{OWNER_PROJECT}/protectables/{FS}/instances?" in href
    second = owner.client.get(url, {"limit": 2, "marker": first["instances"][-1]["id"]}).json()
    assert [i["name"] for i in second["instances"]] == ["data/b", "data/a/deep"]


def test_reader_may_list_protectables(reader, fs_provider):
    assert reader.client.get(reader.url(f"protectables/{FS}/instances")).status_code == 200
