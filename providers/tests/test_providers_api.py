"""GET /providers and /providers/{id} (contract §2.1)."""
from __future__ import annotations

import pytest

from providers.testing import provider_document, write_provider_file

IDS = [
    "10000000-0000-4000-8000-000000000001",
    "20000000-0000-4000-8000-000000000002",
    "30000000-0000-4000-8000-000000000003",
]


@pytest.fixture
def three_providers(provider_dir, tmp_path):
    for index, provider_id in enumerate(reversed(IDS)):
        write_provider_file(
            provider_dir,
            provider_document(provider_id=provider_id, name=f"provider {provider_id[0]}", bank_path=tmp_path / "b"),
            f"{index}.yaml",
        )
    return IDS


def test_list_is_ordered_by_id_with_karbor_envelope(owner, three_providers):
    response = owner.client.get(owner.url("providers"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert [p["id"] for p in body["providers"]] == IDS
    assert body["providers_links"] == []
    assert set(body["providers"][0]) == {"id", "name", "description", "extended_info_schema"}


def test_extended_info_schema_has_the_three_maps_from_the_plugins(owner, fs_provider):
    provider = owner.client.get(owner.url(f"providers/{fs_provider.provider_id}")).json()["provider"]
    schema = provider["extended_info_schema"]
    assert set(schema) == {"options_schema", "restore_schema", "saved_info_schema"}
    options = schema["options_schema"]["Filesystem::Directory"]
    assert options["type"] == "object"
    assert set(options["properties"]) == {"exclude", "follow_symlinks"}
    assert set(schema["restore_schema"]["Filesystem::Directory"]["properties"]) == {"overwrite"}
    assert set(schema["saved_info_schema"]["Filesystem::Directory"]["properties"]) == {"files", "bytes", "manifest"}


def test_show_returns_the_same_name_as_the_list(owner, three_providers):
    for item in owner.client.get(owner.url("providers")).json()["providers"]:
        shown = owner.client.get(owner.url(f"providers/{item['id']}")).json()["provider"]
        assert shown == item


def test_show_accepts_trailing_slash_and_undashed_uuid(owner, three_providers):
    assert owner.client.get(owner.url(f"providers/{IDS[0]}/")).status_code == 200
    assert owner.client.get(owner.url(f"providers/{IDS[0].replace('-', '')}")).json()["provider"]["id"] == IDS[0]


def test_show_unknown_provider_is_404_with_karbor_message(owner, three_providers):
    unknown = "99999999-0000-4000-8000-000000000009"
    response = owner.client.get(owner.url(f"providers/{unknown}"))
    assert response.status_code == 404
    assert response.json()["itemNotFound"]["message"] == f"Provider {unknown} could not be found."


def test_show_non_uuid_is_400(owner, three_providers):
    response = owner.client.get(owner.url("providers/not-a-uuid"))
    assert response.status_code == 400
    assert "provider_id" in response.json()["badRequest"]["message"]


def test_filters_compare_exact_name_and_description(owner, three_providers):
    by_name = owner.client.get(owner.url("providers"), {"name": "provider 2"}).json()["providers"]
    assert [p["id"] for p in by_name] == [IDS[1]]
    assert owner.client.get(owner.url("providers"), {"name": "provider"}).json()["providers"] == []
    by_description = owner.client.get(owner.url("providers"), {"description": "provider 3 (test)"}).json()["providers"]
    assert [p["id"] for p in by_description] == [IDS[2]]


def test_limit_and_marker_page_through_with_next_link(owner, three_providers):
    first = owner.client.get(owner.url("providers"), {"limit": 2}).json()
    assert [p["id"] for p in first["providers"]] == IDS[:2]
    href = first["providers_links"][0]["href"]
    assert first["providers_links"][0]["rel"] == "next"
    assert f"/v1/{owner.project_id}/providers?" in href and f"marker={IDS[1]}" in href and "limit=2" in href
    second = owner.client.get(owner.url("providers"), {"limit": 2, "marker": IDS[1]}).json()
    assert [p["id"] for p in second["providers"]] == IDS[2:]
    assert second["providers_links"] == []


def test_unknown_marker_is_ignored(owner, three_providers):
    body = owner.client.get(owner.url("providers"), {"marker": "nope"}).json()
    assert [p["id"] for p in body["providers"]] == IDS


@pytest.mark.parametrize("limit", ["0", "-1", "abc"])
def test_bad_limit_is_400(owner, three_providers, limit):
    response = owner.client.get(owner.url("providers"), {"limit": limit})
    assert response.status_code == 400
    assert "limit" in response.json()["badRequest"]["message"]


def test_disabled_provider_is_neither_listed_nor_shown(owner, provider_dir, tmp_path):
    write_provider_file(provider_dir, provider_document(provider_id=IDS[0], name="off", bank_path=tmp_path, enabled=False))
    assert owner.client.get(owner.url("providers")).json()["providers"] == []
    assert owner.client.get(owner.url(f"providers/{IDS[0]}")).status_code == 404


def test_reader_and_stranger_see_providers_but_non_members_are_refused(reader, stranger, three_providers, client):
    assert len(reader.client.get(reader.url("providers")).json()["providers"]) == 3
    assert len(stranger.client.get(stranger.url("providers")).json()["providers"]) == 3
    assert stranger.client.get(reader.url("providers")).status_code == 403
    assert client.get(reader.url("providers")).status_code == 401


def test_shipped_default_provider_is_listed(owner):
    providers = owner.client.get(owner.url("providers")).json()["providers"]
    assert [(p["id"], p["name"]) for p in providers] == [
        ("6659007d-6f66-4a0f-9cb4-17d6aded0bb9", "Local file system provider")
    ]
