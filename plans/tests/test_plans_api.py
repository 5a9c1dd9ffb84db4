"""The plans API (contract §2.4): create, list, show, update, delete, over a Filesystem provider on tmp dirs."""
from __future__ import annotations

import json
import time
from unittest.mock import ANY

import pytest

from plans.models import Plan, PlanStatus, Resource
from providers.testing import FS_PROVIDER_ID

FS = "Filesystem::Directory"


def counts() -> tuple[int, int]:
    return Plan.all_objects.count(), Resource.all_objects.count()


def resource(fs_provider, key: str, **extra) -> dict:
    name = {"data": "data", "a": "data/a", "b": "data/b", "private": "private", "theirs": "theirs"}[key]
    return {"id": fs_provider.id_of(key), "type": FS, "name": name, **extra}


def plan_body(fs_provider, **overrides) -> dict:
    plan = {
        "name": "My application",
        "description": "web tier",
        "provider_id": FS_PROVIDER_ID,
        "resources": [resource(fs_provider, "data"), resource(fs_provider, "private", extra_info={"note": "db dumps"})],
        "parameters": {FS: {"exclude": ["*.tmp"]}},
    }
    plan.update(overrides)
    return {"plan": plan}


def create(tenant, fs_provider, **overrides) -> dict:
    response = tenant.client.post(tenant.url("plans"), plan_body(fs_provider, **overrides), format="json")
    assert response.status_code == 200, response.content
    return response.json()["plan"]


# --- create ---------------------------------------------------------------------------------
def test_create_returns_karbor_plan_view_in_suspended_state(owner, fs_provider):
    response = owner.client.post(owner.url("plans"), plan_body(fs_provider), format="json")
    assert response.status_code == 200
    plan = response.json()["plan"]
    assert set(plan) == {"id", "name", "description", "resources", "provider_id", "status", "parameters"}
    assert plan["status"] == "suspended"
    assert plan["provider_id"] == FS_PROVIDER_ID
    assert plan["parameters"] == {FS: {"exclude": ["*.tmp"]}}
    assert plan["resources"] == [
        {"id": fs_provider.id_of("data"), "type": FS, "name": "data"},
        {"id": fs_provider.id_of("private"), "type": FS, "name": "private", "extra_info": {"note": "db dumps"}},
    ]
    stored = Plan.objects.get(pk=plan["id"])
    assert stored.project_id == owner.project_id and stored.resources.count() == 2


def test_create_coerces_cli_strings_and_accepts_per_resource_keys(owner, fs_provider):
    per_resource = f"{FS}#{fs_provider.id_of('data')}"
    plan = create(
        owner,
        fs_provider,
        parameters={FS: {"follow_symlinks": "false", "exclude": "*.tmp, cache/**"}, per_resource: {"exclude": "[\"x\"]"}},
    )
    assert plan["parameters"] == {FS: {"follow_symlinks": False, "exclude": ["*.tmp", "cache/**"]}, per_resource: {"exclude": ["x"]}}


def test_create_keeps_parameters_of_types_the_provider_does_not_serve(owner, fs_provider):
    plan = create(owner, fs_provider, parameters={"OS::Cinder::Volume": {"backup_mode": "full"}})
    assert plan["parameters"] == {"OS::Cinder::Volume": {"backup_mode": "full"}}


def test_teammate_may_create_and_empty_parameters_are_fine(teammate, fs_provider):
    assert create(teammate, fs_provider, parameters={}, name=None)["name"] == ""


BAD_CREATE = [
    ("raw", "{not json", "JSON"),
    ("raw", "", "plan"),
    ("raw", "[]", "plan"),
    ("body", {"plan": []}, "plan"),
    ("body", {"plans": {}}, "plans"),
    ("body", {"plan": {}, "extra": 1}, "extra"),
    ("plan", {"colour": "red"}, "colour"),
    ("drop", "provider_id", "provider_id"),
    ("plan", {"provider_id": "not-a-uuid"}, "provider_id"),
    ("plan", {"provider_id": 12}, "provider_id"),
    ("plan", {"provider_id": "99999999-0000-4000-8000-000000000009"}, "The provider could not be found."),
    ("plan", {"name": "x" * 256}, "name"),
    ("plan", {"name": 5}, "name"),
    ("plan", {"name": "   "}, "name"),
    ("plan", {"description": "d" * 256}, "description"),
    ("drop", "resources", "resources"),
    ("plan", {"resources": []}, "resources"),
    ("plan", {"resources": "data"}, "resources"),
    ("plan", {"resources": ["data"]}, "resources.0"),
    ("plan", {"resources": [{"type": FS, "name": "x"}]}, "resources.0.id"),
    ("plan", {"resources": [{"id": "x", "type": FS, "name": "x", "size": 1}]}, "resources.0.size"),
    ("plan", {"resources": [{"id": "x", "type": FS, "name": "x", "extra_info": "no"}]}, "resources.0.extra_info"),
    ("plan", {"resources": [{"id": "x" * 37, "type": FS, "name": "x"}]}, "resources.0.id"),
    ("plan", {"resources": [{"id": "x", "type": "No::Such", "name": "x"}]}, "resources.0.type"),
    ("plan", {"resources": [{"id": "x", "type": "S3::Bucket", "name": "x"}]}, "resources.0.type"),
    ("plan", {"resources": [{"id": "00000000-0000-4000-8000-000000000000", "type": FS, "name": "x"}]}, "resources.0.id"),
    ("theirs", None, "resources.0.id"),
    ("outside", None, "resources.0.id"),
    ("twice", None, "resources.1.id"),
    ("drop", "parameters", "parameters"),
    ("plan", {"parameters": []}, "parameters"),
    ("plan", {"parameters": {"No::Such": {}}}, "parameters.No::Such"),
    ("plan", {"parameters": {f"{FS}#not-uuid": {}}}, f"parameters.{FS}#not-uuid"),
    ("plan", {"parameters": {FS: "exclude"}}, f"parameters.{FS}"),
    ("plan", {"parameters": {FS: {"compress": True}}}, f"parameters.{FS}.compress"),
    ("plan", {"parameters": {FS: {"follow_symlinks": True}}}, f"parameters.{FS}.follow_symlinks"),
    ("plan", {"parameters": {FS: {"follow_symlinks": "maybe"}}}, f"parameters.{FS}.follow_symlinks"),
    ("plan", {"parameters": {FS: {"exclude": 5}}}, f"parameters.{FS}.exclude"),
    ("plan", {"parameters": {FS: {"exclude": [1]}}}, f"parameters.{FS}.exclude.0"),
]


@pytest.mark.parametrize(("kind", "value", "expected"), BAD_CREATE, ids=[f"{i}-{c[0]}" for i, c in enumerate(BAD_CREATE)])
def test_bad_create_is_400_naming_the_field_and_changes_nothing(owner, fs_provider, kind, value, expected):
    before = counts()
    url = owner.url("plans")
    if kind == "raw":
        response = owner.client.generic("POST", url, value, content_type="application/json")
    elif kind == "body":
        response = owner.client.post(url, value, format="json")
    else:
        body = plan_body(fs_provider)
        if kind == "plan":
            body["plan"].update(value)
        elif kind == "drop":
            del body["plan"][value]
        elif kind == "theirs":
            body["plan"]["resources"] = [resource(fs_provider, "theirs")]
        elif kind == "outside":
            body["plan"]["resources"] = [{"id": fs_provider.id_of("outside"), "type": FS, "name": "escape"}]
        elif kind == "twice":
            body["plan"]["resources"] = [resource(fs_provider, "a"), resource(fs_provider, "a")]
        response = owner.client.post(url, body, format="json")
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    assert expected in response.json()["badRequest"]["message"]
    assert counts() == before


def test_missing_content_type_body_is_refused(owner, fs_provider):
    response = owner.client.generic("POST", owner.url("plans"), json.dumps(plan_body(fs_provider)), content_type="text/plain")
    assert response.status_code in (400, 415)
    assert Plan.objects.count() == 0


# --- show / list ----------------------------------------------------------------------------
def test_show_returns_the_created_plan(owner, fs_provider):
    plan = create(owner, fs_provider)
    response = owner.client.get(owner.url(f"plans/{plan['id']}"))
    assert response.status_code == 200
    assert response.json() == {"plan": plan}


def test_show_non_uuid_is_400_and_unknown_is_404(owner, fs_provider):
    assert owner.client.get(owner.url("plans/not-a-uuid")).status_code == 400
    response = owner.client.get(owner.url("plans/00000000-0000-4000-8000-000000000000"))
    assert response.status_code == 404
    assert "could not be found" in response.json()["itemNotFound"]["message"]


@pytest.fixture
def five_plans(owner, fs_provider):
    plans = []
    for index, (name, status) in enumerate(
        [("alpha", "suspended"), ("beta", "started"), ("gamma", "suspended"), ("delta", "started"), ("alpha-2", "suspended")]
    ):
        plan = create(owner, fs_provider, name=name, description=f"tier {index}")
        if status == "started":
            owner.client.put(owner.url(f"plans/{plan['id']}"), {"plan": {"status": "started"}}, format="json")
        plans.append(plan)
    return plans


def test_list_newest_first_with_limit_marker_and_next_link(owner, five_plans):
    url = owner.url("plans")
    first = owner.client.get(url, {"limit": 2}).json()
    assert [p["name"] for p in first["plans"]] == ["alpha-2", "delta"]
    link = first["plans_links"][0]
    assert link["rel"] == "next" and f"marker={first['plans'][-1]['id']}" in link["href"] and "limit=2" in link["href"]
    second = owner.client.get(url, {"limit": 2, "marker": first["plans"][-1]["id"]}).json()
    assert [p["name"] for p in second["plans"]] == ["gamma", "beta"]
    third = owner.client.get(url, {"limit": 2, "marker": second["plans"][-1]["id"]}).json()
    assert [p["name"] for p in third["plans"]] == ["alpha"] and third["plans_links"] == []


def test_list_sort_and_offset(owner, five_plans):
    body = owner.client.get(owner.url("plans"), {"sort": "name:asc"}).json()
    assert [p["name"] for p in body["plans"]] == ["alpha", "alpha-2", "beta", "delta", "gamma"]
    body = owner.client.get(owner.url("plans"), {"sort_key": "name", "sort_dir": "asc", "offset": 3}).json()
    assert [p["name"] for p in body["plans"]] == ["delta", "gamma"]
    assert owner.client.get(owner.url("plans"), {"sort": "colour"}).status_code == 400


def test_list_filters(owner, five_plans):
    def names(**query):
        return sorted(p["name"] for p in owner.client.get(owner.url("plans"), query).json()["plans"])

    assert names(name="^alpha") == ["alpha", "alpha-2"]
    assert names(description="tier [12]") == ["beta", "gamma"]
    assert names(status="started") == ["beta", "delta"]
    assert names(status="start") == []
    response = owner.client.get(owner.url("plans"), {"name": "(unclosed"})
    assert response.status_code == 400 and "name" in response.json()["badRequest"]["message"]


def test_catastrophic_backtracking_filter_answers_within_a_second(owner, fs_provider):
    # (a+)+$ against "aaa…a!" backtracks 2^27 times in a backtracking engine (SQLite's REGEXP).
    create(owner, fs_provider, name="a" * 27 + "!", description="a" * 27 + "!")
    for field in ("name", "description"):
        started = time.monotonic()
        response = owner.client.get(owner.url("plans"), {field: "(a+)+$"})
        assert time.monotonic() - started < 1.0
        if response.status_code == 200:
            assert response.json()["plans"] == []
        else:
            assert response.status_code == 400 and response.json()["badRequest"]["fields"] == {field: [ANY]}


def test_overlong_filter_pattern_is_a_400_naming_the_field(owner, fs_provider):
    create(owner, fs_provider, name="alpha")
    response = owner.client.get(owner.url("plans"), {"name": "a" * 256})
    assert response.status_code == 400
    assert "longer than 255" in response.json()["badRequest"]["fields"]["name"][0]
    assert [p["name"] for p in owner.client.get(owner.url("plans"), {"name": "a" * 5}).json()["plans"]] == []


@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "x"}, {"offset": "-1"}, {"marker": "nope"}])
def test_list_bad_paging_is_400(owner, five_plans, query):
    assert owner.client.get(owner.url("plans"), query).status_code == 400


def test_all_tenants_only_for_cloud_admin(owner, stranger, cloud_admin, fs_provider):
    create(owner, fs_provider)
    theirs = create(stranger, fs_provider, resources=[resource(fs_provider, "theirs")])
    assert [p["id"] for p in stranger.client.get(stranger.url("plans"), {"all_tenants": "1"}).json()["plans"]] == [theirs["id"]]
    everything = cloud_admin.client.get(cloud_admin.url("plans"), {"all_tenants": "true"}).json()["plans"]
    assert len(everything) == 2


# --- update ---------------------------------------------------------------------------------
def put(tenant, plan_id, inner):
    return tenant.client.put(tenant.url(f"plans/{plan_id}"), {"plan": inner}, format="json")


def test_update_name_description_and_resources(owner, fs_provider):
    plan = create(owner, fs_provider)
    response = put(owner, plan["id"], {"name": "renamed", "description": None, "resources": [resource(fs_provider, "b")]})
    assert response.status_code == 200
    updated = response.json()["plan"]
    assert (updated["name"], updated["description"]) == ("renamed", None)
    assert updated["resources"] == [{"id": fs_provider.id_of("b"), "type": FS, "name": "data/b"}]
    assert updated["parameters"] == plan["parameters"]
    assert Resource.objects.filter(plan_id=plan["id"]).count() == 1
    assert Resource.all_objects.filter(plan_id=plan["id"], deleted=True).count() == 2
    assert owner.client.get(owner.url(f"plans/{plan['id']}")).json()["plan"] == updated


def test_start_then_only_suspend_is_allowed(owner, fs_provider):
    plan = create(owner, fs_provider)
    started = put(owner, plan["id"], {"status": "started"})
    assert started.status_code == 200 and started.json()["plan"]["status"] == "started"
    for change in ({"name": "x"}, {"status": "started"}, {"status": "suspended", "name": "x"}):
        response = put(owner, plan["id"], change)
        assert response.status_code == 400
        assert response.json()["badRequest"]["message"] == "Invalid plan: The plan can be only updated in suspended status."
    assert Plan.objects.get(pk=plan["id"]).name == "My application"
    suspended = put(owner, plan["id"], {"status": "suspended"})
    assert suspended.status_code == 200 and suspended.json()["plan"]["status"] == "suspended"
    assert put(owner, plan["id"], {"name": "x"}).status_code == 200


BAD_UPDATE = [
    ({}, "Missing updated parameters in request body."),
    ({"status": "running"}, "status"),
    ({"status": None}, "status"),
    ({"parameters": {}}, "parameters"),
    ({"provider_id": FS_PROVIDER_ID}, "provider_id"),
    ({"colour": "red"}, "colour"),
    ({"name": "n" * 256}, "name"),
    ({"name": ["x"]}, "name"),
    ({"resources": []}, "resources"),
    ({"resources": [{"id": "00000000-0000-4000-8000-000000000000", "type": FS, "name": "x"}]}, "resources.0.id"),
]


@pytest.mark.parametrize(("inner", "expected"), BAD_UPDATE)
def test_bad_update_is_400_and_changes_nothing(owner, fs_provider, inner, expected):
    plan = create(owner, fs_provider)
    before = counts()
    response = put(owner, plan["id"], inner)
    assert response.status_code == 400
    assert expected in response.json()["badRequest"]["message"]
    assert counts() == before
    assert owner.client.get(owner.url(f"plans/{plan['id']}")).json()["plan"] == plan


def test_update_with_non_object_bodies_is_400(owner, fs_provider):
    plan = create(owner, fs_provider)
    url = owner.url(f"plans/{plan['id']}")
    for raw in ("", "{bad", '{"plan": 3}', "[]"):
        assert owner.client.generic("PUT", url, raw, content_type="application/json").status_code == 400


def test_update_unknown_or_bad_id(owner, fs_provider):
    assert put(owner, "00000000-0000-4000-8000-000000000000", {"name": "x"}).status_code == 404
    assert put(owner, "bad-id", {"name": "x"}).status_code == 400


# --- delete ---------------------------------------------------------------------------------
def test_delete_soft_deletes_plan_and_resources_with_empty_200(owner, fs_provider):
    plan = create(owner, fs_provider)
    response = owner.client.delete(owner.url(f"plans/{plan['id']}"))
    assert response.status_code == 200
    assert response.content == b""
    assert response["Content-Type"] == "application/json"
    row = Plan.all_objects.get(pk=plan["id"])
    assert row.deleted and row.deleted_at is not None
    assert Resource.all_objects.filter(plan_id=plan["id"], deleted=False).count() == 0
    assert owner.client.get(owner.url(f"plans/{plan['id']}")).status_code == 404
    assert owner.client.get(owner.url("plans")).json()["plans"] == []
    assert owner.client.delete(owner.url(f"plans/{plan['id']}")).status_code == 404


def test_started_plan_can_be_deleted(owner, fs_provider):
    plan = create(owner, fs_provider)
    put(owner, plan["id"], {"status": "started"})
    assert owner.client.delete(owner.url(f"plans/{plan['id']}")).status_code == 200


# --- tenancy and roles ----------------------------------------------------------------------
def test_stranger_cannot_see_change_or_delete_the_owners_plan(owner, stranger, fs_provider):
    plan = create(owner, fs_provider)
    before = counts()
    own_url = stranger.url(f"plans/{plan['id']}")
    assert stranger.client.get(own_url).status_code == 404
    assert stranger.client.put(own_url, {"plan": {"name": "pwned"}}, format="json").status_code == 404
    assert stranger.client.delete(own_url).status_code == 404
    assert stranger.client.get(stranger.url("plans")).json()["plans"] == []
    # Through the owner's project URL the stranger is not a member at all.
    assert stranger.client.get(owner.url(f"plans/{plan['id']}")).status_code == 403
    assert stranger.client.delete(owner.url(f"plans/{plan['id']}")).status_code == 403
    assert counts() == before
    assert Plan.objects.get(pk=plan["id"]).name == "My application"


def test_stranger_cannot_plan_the_owners_private_directory(stranger, fs_provider):
    response = stranger.client.post(stranger.url("plans"), plan_body(fs_provider), format="json")
    assert response.status_code == 400
    assert "resources.1.id" in response.json()["badRequest"]["message"]
    assert Plan.all_objects.count() == 0


def test_reader_can_read_but_not_write(owner, reader, fs_provider):
    plan = create(owner, fs_provider)
    before = counts()
    assert reader.client.get(reader.url(f"plans/{plan['id']}")).status_code == 200
    assert reader.client.get(reader.url("plans")).status_code == 200
    assert reader.client.post(reader.url("plans"), plan_body(fs_provider), format="json").status_code == 403
    assert put(reader, plan["id"], {"name": "x"}).status_code == 403
    assert reader.client.delete(reader.url(f"plans/{plan['id']}")).status_code == 403
    assert counts() == before
    assert Plan.objects.get(pk=plan["id"]).status == PlanStatus.SUSPENDED


def test_plan_of_a_provider_that_disappeared_cannot_change_resources(owner, fs_provider, settings, tmp_path):
    plan = create(owner, fs_provider)
    empty = tmp_path / "empty.d"
    empty.mkdir()
    settings.KARBOR_PROVIDER_CONFIG_DIR = empty
    response = put(owner, plan["id"], {"resources": [resource(fs_provider, "a")]})
    assert response.status_code == 400
    assert response.json()["badRequest"]["message"] == "The provider could not be found."
    assert put(owner, plan["id"], {"name": "still renamable"}).status_code == 200


def test_the_plans_quota_is_enforced_on_create_and_nothing_is_written(owner, fs_provider):
    from protection.models import Quota

    Quota.objects.create(project_id=owner.project_id, resource="plans", hard_limit=2)
    create(owner, fs_provider)
    create(owner, fs_provider)
    response = owner.client.post(owner.url("plans"), plan_body(fs_provider), format="json")
    assert response.status_code == 413, response.content
    assert "plans" in next(iter(response.json().values()))["message"]
    assert Plan.all_objects.filter(project_id=owner.project_id).count() == 2
