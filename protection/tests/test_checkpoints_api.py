"""The checkpoints API (contract §2.2): create, list, show, delete, reset-state, with Karbor's envelopes."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from protection import flows
from protection.models import Checkpoint, OperationLog, Quota
from protection.tests.flowkit import FS, make_plan
from providers.testing import FS_PROVIDER_ID, STRANGER_PROJECT
from providers import testing as provider_testing

UNKNOWN = "00000000-0000-4000-8000-000000000000"

# The shared fixtures (a Filesystem provider over tmp dirs).
fs_provider = provider_testing.fs_provider
provider_dir = provider_testing.provider_dir


def url(tenant, path: str = "", provider: str = FS_PROVIDER_ID) -> str:
    return tenant.url(f"providers/{provider}/checkpoints{path}")


def create(tenant, plan_id, **inner):
    return tenant.client.post(url(tenant), {"checkpoint": {"plan_id": plan_id, **inner}}, format="json")


def counts() -> tuple[int, int]:
    return Checkpoint.all_objects.count(), OperationLog.all_objects.count()


@pytest.fixture
def plan(owner, fs_provider):
    return make_plan(fs_provider)


# --- create -----------------------------------------------------------------------------------
def test_create_returns_protecting_checkpoint_and_queues_protect_after_commit(
    owner, plan, django_capture_on_commit_callbacks, monkeypatch
):
    sent = []
    from protection import tasks

    monkeypatch.setattr(tasks.checkpoint_protect, "delay", lambda checkpoint_id: sent.append(checkpoint_id))
    with django_capture_on_commit_callbacks(execute=True):
        response = create(owner, plan.id, **{"extra-info": {"note": "before upgrade", "ticket": 42}})
    assert response.status_code == 200, response.content
    body = response.json()["checkpoint"]
    assert body["status"] == "protecting"
    assert body["project_id"] == owner.project_id and body["provider_id"] == FS_PROVIDER_ID
    assert body["protection_plan"]["id"] == plan.id
    assert body["protection_plan"]["resources"] == [{"id": plan.resources.get().resource_id, "type": FS, "name": "data"}]
    assert body["resource_graph"] is None
    # A JSON string, as Karbor sends it, of what the caller gave.
    assert json.loads(body["extra_info"]) == {"note": "before upgrade", "ticket": 42, "created_by": "manual"}
    assert body["created_at"] == timezone.now().strftime("%Y-%m-%d")
    assert sent == [body["id"]]
    log = OperationLog.objects.get(checkpoint_id=body["id"])
    assert (log.operation_type, log.status, log.plan_id) == ("protect", "protecting", plan.id)


def test_create_accepts_underscore_extra_info_and_null(owner, plan):
    stored = create(owner, plan.id, extra_info={"k": "v"}).json()["checkpoint"]
    assert json.loads(stored["extra_info"]) == {"k": "v", "created_by": "manual"}
    Checkpoint.objects.filter(pk=stored["id"]).update(status="error")  # one protect of a plan at a time
    # python-karborclient sends "extra-info": null when none is given.
    empty = create(owner, plan.id, **{"extra-info": None}).json()["checkpoint"]
    assert json.loads(empty["extra_info"]) == {"created_by": "manual"}


def test_another_projects_plan_is_404_and_nothing_is_created(owner, stranger, fs_provider):
    theirs = make_plan(fs_provider, keys=("theirs",), project_id=STRANGER_PROJECT)
    before = counts()
    response = create(owner, theirs.id)
    assert response.status_code == 404
    assert "could not be found" in response.json()["itemNotFound"]["message"]
    assert counts() == before


def test_provider_other_than_the_plans_is_400_naming_it(owner, plan, fs_provider, provider_dir, tmp_path):
    from providers.testing import provider_document, write_provider_file

    other = "b0b0b0b0-0000-4000-8000-000000000001"
    write_provider_file(provider_dir, provider_document(provider_id=other, name="Other", bank_path=tmp_path / "bank2"))
    from providers import registry

    registry.clear()
    before = counts()
    response = owner.client.post(url(owner, provider=other), {"checkpoint": {"plan_id": plan.id}}, format="json")
    assert response.status_code == 400
    body = response.json()["badRequest"]
    assert "provider_id" in body["fields"] and FS_PROVIDER_ID in body["message"]
    assert counts() == before


def test_unknown_provider_is_404_and_bad_provider_id_400(owner, plan):
    response = owner.client.post(url(owner, provider=UNKNOWN), {"checkpoint": {"plan_id": plan.id}}, format="json")
    assert response.status_code == 404
    assert owner.client.get(url(owner, provider="not-a-uuid")).status_code == 400


BAD_BODIES = [
    ({"checkpoint": {}}, "plan_id"),
    ({"checkpoint": {"plan_id": "not-a-uuid"}}, "plan_id"),
    ({"checkpoint": {"plan_id": 5}}, "plan_id"),
    ({"checkpoint": {"plan_id": UNKNOWN, "colour": "red"}}, "colour"),
    ({"checkpoint": {"plan_id": UNKNOWN}, "extra": 1}, "extra"),
    ({"checkpoint": []}, "checkpoint"),
    ({"checkpoints": {}}, "checkpoints"),
    ({"checkpoint": {"plan_id": "PLAN", "extra-info": "x"}}, "extra-info"),
    ({"checkpoint": {"plan_id": "PLAN", "extra-info": {"k": [1]}}}, "extra-info.k"),
    ({"checkpoint": {"plan_id": "PLAN", "extra-info": {"bad/key": "v"}}}, "extra-info.bad/key"),
    ({"checkpoint": {"plan_id": "PLAN", "extra-info": {}, "extra_info": {}}}, "extra_info"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES, ids=[str(i) for i in range(len(BAD_BODIES))])
def test_malformed_body_is_400_naming_the_field(owner, plan, body, field):
    if isinstance(body.get("checkpoint"), dict) and body["checkpoint"].get("plan_id") == "PLAN":
        body["checkpoint"]["plan_id"] = plan.id
    before = counts()
    response = owner.client.post(url(owner), body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["badRequest"]["message"]
    assert counts() == before


def test_quota_exceeded_is_413(owner, plan):
    Quota.objects.create(project_id=owner.project_id, resource="checkpoints", hard_limit=1)
    assert create(owner, plan.id).status_code == 200
    before = counts()
    response = create(owner, plan.id)
    assert response.status_code == 413
    assert "Maximum number of checkpoints allowed (1) exceeded" in response.json()["overLimit"]["message"]
    assert counts() == before


def test_reader_cannot_create(reader, plan):
    assert create(reader, plan.id).status_code == 403


# --- show / list ------------------------------------------------------------------------------
def test_show_includes_graph_and_per_resource_status_after_protect(owner, plan, fs_provider):
    checkpoint_id = create(owner, plan.id).json()["checkpoint"]["id"]
    flows.checkpoint_protect_run(checkpoint_id=checkpoint_id, worker="test:1")
    response = owner.client.get(url(owner, f"/{checkpoint_id}"))
    assert response.status_code == 200
    body = response.json()["checkpoint"]
    key = f"{FS}#{fs_provider.id_of('data')}"
    assert body["status"] == "available"
    assert body["resources_status"] == {key: "available"}
    assert body["resources_reason"] == {}
    nodes, adjacency = json.loads(body["resource_graph"])
    assert nodes == {"0x0": [FS, fs_provider.id_of("data"), "data", None]} and adjacency == []
    assert body["protection_plan"]["provider_id"] == FS_PROVIDER_ID
    assert body["progress"]["bytes_done"] >= len("hello")


def test_show_errors(owner, stranger, plan, fs_provider):
    assert owner.client.get(url(owner, "/not-a-uuid")).status_code == 400
    assert owner.client.get(url(owner, f"/{UNKNOWN}")).status_code == 404
    theirs = make_plan(fs_provider, keys=("theirs",), project_id=STRANGER_PROJECT)
    their_checkpoint = create(stranger, theirs.id).json()["checkpoint"]["id"]
    response = owner.client.get(url(owner, f"/{their_checkpoint}"))
    assert response.status_code == 404  # as for plans: a stranger learns nothing about other ids


def test_cloud_admin_may_show_another_projects_checkpoint(cloud_admin, stranger, fs_provider):
    theirs = make_plan(fs_provider, keys=("theirs",), project_id=STRANGER_PROJECT)
    checkpoint_id = create(stranger, theirs.id).json()["checkpoint"]["id"]
    assert cloud_admin.client.get(url(cloud_admin, f"/{checkpoint_id}")).status_code == 200


@pytest.fixture
def four_checkpoints(owner, plan, fs_provider):
    other_plan = make_plan(fs_provider, keys=("a",), name="other")
    ids = []
    for index, plan_id in enumerate([plan.id, other_plan.id, plan.id, plan.id]):
        checkpoint_id = create(owner, plan_id).json()["checkpoint"]["id"]
        # (available: one protect of a plan at a time)
        Checkpoint.objects.filter(pk=checkpoint_id).update(
            created_at=timezone.now() - timedelta(days=10 - index * 3), status="available"
        )
        ids.append(checkpoint_id)
    return ids, other_plan


def test_list_newest_first_with_marker_and_next_link(owner, four_checkpoints):
    ids, _ = four_checkpoints
    first = owner.client.get(url(owner), {"limit": 2}).json()
    assert [c["id"] for c in first["checkpoints"]] == [ids[3], ids[2]]
    link = first["checkpoints_links"][0]
    assert link["rel"] == "next" and f"marker={ids[2]}" in link["href"]
    assert f"/providers/{FS_PROVIDER_ID}/checkpoints?" in link["href"]
    second = owner.client.get(url(owner), {"limit": 2, "marker": ids[2]}).json()
    assert [c["id"] for c in second["checkpoints"]] == [ids[1], ids[0]]
    third = owner.client.get(url(owner), {"limit": 2, "marker": ids[0]}).json()
    assert third == {"checkpoints": [], "checkpoints_links": []}
    ascending = owner.client.get(url(owner), {"sort": "created_at:asc"}).json()
    assert [c["id"] for c in ascending["checkpoints"]] == ids


def test_list_filters_plan_and_dates(owner, four_checkpoints, plan):
    ids, other_plan = four_checkpoints

    def listed(**query):
        response = owner.client.get(url(owner), query)
        assert response.status_code == 200, response.content
        return sorted(c["id"] for c in response.json()["checkpoints"])

    assert listed(plan_id=other_plan.id) == [ids[1]]
    start = (timezone.now() - timedelta(days=7)).strftime("%Y-%m-%d")
    end = (timezone.now() - timedelta(days=4)).strftime("%Y-%m-%d")
    assert listed(start_date=start) == sorted(ids[1:])
    assert listed(start_date=start, end_date=end) == sorted(ids[1:3])
    assert listed(plan_id=plan.id, end_date=end) == sorted([ids[0], ids[2]])
    response = owner.client.get(url(owner), {"start_date": "yesterday"})
    assert response.status_code == 400 and "start_date" in response.json()["badRequest"]["message"]
    assert owner.client.get(url(owner), {"limit": "0"}).status_code == 400


def test_list_is_project_scoped_and_all_tenants_is_for_cloud_admin(owner, stranger, cloud_admin, plan, fs_provider):
    mine = create(owner, plan.id).json()["checkpoint"]["id"]
    theirs_plan = make_plan(fs_provider, keys=("theirs",), project_id=STRANGER_PROJECT)
    theirs = create(stranger, theirs_plan.id).json()["checkpoint"]["id"]
    assert [c["id"] for c in owner.client.get(url(owner), {"all_tenants": "1"}).json()["checkpoints"]] == [mine]
    assert [c["id"] for c in owner.client.get(url(owner), {"project_id": STRANGER_PROJECT}).json()["checkpoints"]] == [mine]
    everything = cloud_admin.client.get(url(cloud_admin), {"all_tenants": "true"}).json()["checkpoints"]
    assert sorted(c["id"] for c in everything) == sorted([mine, theirs])
    only_theirs = cloud_admin.client.get(url(cloud_admin), {"all_tenants": "true", "project_id": STRANGER_PROJECT})
    assert [c["id"] for c in only_theirs.json()["checkpoints"]] == [theirs]


# --- delete --------------------------------------------------------------------------------
def test_delete_returns_empty_object_then_flow_marks_deleted(owner, plan, django_capture_on_commit_callbacks, monkeypatch):
    from protection import tasks

    checkpoint_id = create(owner, plan.id).json()["checkpoint"]["id"]
    flows.checkpoint_protect_run(checkpoint_id=checkpoint_id, worker="test:1")
    sent = []
    monkeypatch.setattr(tasks.checkpoint_delete, "delay", lambda cid: sent.append(cid))
    with django_capture_on_commit_callbacks(execute=True):
        response = owner.client.delete(url(owner, f"/{checkpoint_id}"))
    assert response.status_code == 200 and response.json() == {}
    assert sent == [checkpoint_id]
    assert Checkpoint.objects.get(pk=checkpoint_id).status == "deleting"
    flows.checkpoint_delete_run(checkpoint_id=checkpoint_id, worker="test:2")
    shown = owner.client.get(url(owner, f"/{checkpoint_id}")).json()["checkpoint"]
    assert shown["status"] == "deleted"
    assert owner.client.get(url(owner)).json()["checkpoints"] == []
    log = OperationLog.objects.get(checkpoint_id=checkpoint_id, operation_type="delete")
    assert log.status == "deleted" and log.ended_at is not None
    assert owner.client.delete(url(owner, f"/{checkpoint_id}")).status_code == 404


def test_delete_while_protecting_is_409_with_reason(owner, plan):
    checkpoint_id = create(owner, plan.id).json()["checkpoint"]["id"]
    response = owner.client.delete(url(owner, f"/{checkpoint_id}"))
    assert response.status_code == 409
    assert "protecting" in response.json()["conflictingRequest"]["message"]
    assert Checkpoint.objects.get(pk=checkpoint_id).status == "protecting"


def test_delete_of_another_projects_checkpoint_is_404(owner, stranger, fs_provider):
    theirs = make_plan(fs_provider, keys=("theirs",), project_id=STRANGER_PROJECT)
    checkpoint_id = create(stranger, theirs.id).json()["checkpoint"]["id"]
    Checkpoint.objects.filter(pk=checkpoint_id).update(status="available")
    assert owner.client.delete(url(owner, f"/{checkpoint_id}")).status_code == 404
    assert Checkpoint.objects.get(pk=checkpoint_id).status == "available"


# --- reset state ---------------------------------------------------------------------------
def reset(tenant, checkpoint_id, body):
    return tenant.client.put(url(tenant, f"/{checkpoint_id}"), body, format="json")


def test_reset_state_by_admin_returns_empty_object(owner, plan):
    checkpoint_id = create(owner, plan.id).json()["checkpoint"]["id"]
    Checkpoint.objects.filter(pk=checkpoint_id).update(status="error")
    response = reset(owner, checkpoint_id, {"os-resetState": {"state": "available"}})
    assert response.status_code == 200 and response.json() == {}
    assert Checkpoint.objects.get(pk=checkpoint_id).status == "available"


def test_reset_state_refusals(owner, teammate, plan):
    checkpoint_id = create(owner, plan.id).json()["checkpoint"]["id"]
    response = reset(owner, checkpoint_id, {"os-resetState": {"state": "available"}})
    assert response.status_code == 400 and "protecting" in response.json()["badRequest"]["message"]
    Checkpoint.objects.filter(pk=checkpoint_id).update(status="error")
    bad = reset(owner, checkpoint_id, {"os-resetState": {"state": "deleted"}})
    assert bad.status_code == 400 and "state" in bad.json()["badRequest"]["message"]
    assert reset(owner, checkpoint_id, {"os-resetState": {"state": "available", "x": 1}}).status_code == 400
    assert reset(owner, checkpoint_id, {"resetState": {"state": "available"}}).status_code == 400
    assert reset(teammate, checkpoint_id, {"os-resetState": {"state": "available"}}).status_code == 403
    assert Checkpoint.objects.get(pk=checkpoint_id).status == "error"
