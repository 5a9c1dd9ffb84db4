"""The restores API (contract §2.6): create validates synchronously, list, show, tenancy."""
from __future__ import annotations

import json
import os

import pytest

from protection.models import OperationLog
from providers.testing import OWNER_PROJECT, STRANGER_PROJECT
from restores import flows
from restores.models import Restore
from restores.tests.kit import FS, LOCKED_PROVIDER_ID, restore_body, snapshot, write_checkpoint

pytestmark = pytest.mark.django_db

UNKNOWN = "00000000-0000-4000-8000-000000000000"


def counts() -> tuple[int, int]:
    return Restore.all_objects.count(), OperationLog.all_objects.filter(operation_type="restore").count()


@pytest.fixture
def enqueued(monkeypatch) -> list[str]:
    """Restore ids sent to the broker (the real task's ``delay``, captured)."""
    from restores.tasks import restore_run_task

    sent: list[str] = []
    monkeypatch.setattr(restore_run_task, "delay", lambda restore_id: sent.append(restore_id))
    return sent


def post(tenant, body):
    return tenant.client.post(tenant.url("restores"), body, format="json")


# --- create ----------------------------------------------------------------------------------
def test_create_restore_to_declared_target_answers_in_progress_and_enqueues_on_commit(
    owner, world, enqueued, django_capture_on_commit_callbacks
):
    checkpoint = write_checkpoint(world, [world.app])
    target = str(world.target / "app-copy")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post(owner, restore_body(checkpoint, target=target))
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    restore = response.json()["restore"]
    assert set(restore) == {
        "id", "project_id", "provider_id", "checkpoint_id", "restore_target", "parameters", "status",
        "resources_status", "resources_reason",
    }
    key = f"{FS}#{checkpoint.protection_plan['resources'][0]['id']}"
    assert restore["status"] == "in_progress"
    assert restore["restore_target"] == target
    assert restore["resources_status"] == {key: "restoring"} and restore["resources_reason"] == {}
    assert restore["project_id"] == owner.project_id and restore["checkpoint_id"] == checkpoint.id
    assert len(callbacks) == 1 and enqueued == [restore["id"]]
    entry = OperationLog.objects.get(restore_id=restore["id"])
    assert (entry.operation_type, entry.status, entry.checkpoint_id, entry.plan_id) == (
        "restore", "in_progress", checkpoint.id, checkpoint.plan_id
    )

    finished = flows.restore_run(restore_id=restore["id"])
    assert finished.status == "success", finished.resources_reason
    shown = owner.client.get(owner.url(f"restores/{restore['id']}")).json()["restore"]
    assert shown["status"] == "success" and shown["resources_status"] == {key: "available"}
    assert snapshot(world.target / "app-copy", with_root=True) == snapshot(world.app, with_root=True)


def test_karborclient_body_without_target_restores_in_place(owner, world, enqueued):
    checkpoint = write_checkpoint(world, [world.app])
    (world.app / "small.txt").write_text("changed")
    os.remove(world.app / "sub" / "deeper" / "b.txt")
    response = post(owner, restore_body(checkpoint, target=None))
    assert response.status_code == 200, response.content
    assert response.json()["restore"]["restore_target"] is None
    restore = flows.restore_run(restore_id=response.json()["restore"]["id"])
    assert restore.status == "success", restore.resources_reason
    assert (world.app / "small.txt").read_text() == "hello\n"
    assert (world.app / "sub" / "deeper" / "b.txt").read_text() == "b"


def test_restore_auth_is_accepted_but_neither_stored_nor_echoed(owner, world, enqueued):
    checkpoint = write_checkpoint(world, [world.app])
    auth = {"type": "password", "username": "admin", "password": "s3cret-pw"}
    body = restore_body(checkpoint, target=str(world.target), restore_auth=auth)
    response = post(owner, body)
    assert response.status_code == 200, response.content
    assert "restore_auth" not in response.json()["restore"]
    row = Restore.objects.get(pk=response.json()["restore"]["id"])
    assert "s3cret-pw" not in json.dumps([row.parameters, row.restore_target, row.resources_reason])


def test_parameters_are_validated_coerced_and_stored(owner, world, enqueued):
    checkpoint = write_checkpoint(world, [world.app])
    resource_id = checkpoint.protection_plan["resources"][0]["id"]
    parameters = {FS: {"overwrite": "false"}, f"{FS}#{resource_id}": {"overwrite": True}, "OS::Cinder::Volume": {"x": "1"}}
    response = post(owner, restore_body(checkpoint, target=str(world.target / "p"), parameters=parameters))
    assert response.status_code == 200, response.content
    assert response.json()["restore"]["parameters"] == {
        FS: {"overwrite": False}, f"{FS}#{resource_id}": {"overwrite": True}, "OS::Cinder::Volume": {"x": "1"}
    }


BAD_TARGETS = [
    ("outside", "is not inside a restore target directory"),
    ("relative", "must be an absolute path"),
    ("dotdot", "must not contain '..'"),
    ("symlink-out", "leads out of the restore target directory through a symbolic link"),
    ("theirs", "is not inside a restore target directory"),
    ("file", "exists and is not a directory"),
    ("nul", "Null characters are not allowed"),
]


@pytest.mark.parametrize(("kind", "expected"), BAD_TARGETS, ids=[kind for kind, _ in BAD_TARGETS])
def test_restore_refuses_target_outside_declared_roots_and_creates_nothing(owner, world, enqueued, kind, expected):
    checkpoint = write_checkpoint(world, [world.app])
    (world.target / "escape").symlink_to(world.outside, target_is_directory=True)
    (world.target / "a-file").write_text("x")
    target = {
        "outside": str(world.outside),
        "relative": "restore/app",
        "dotdot": f"{world.target}/../outside",
        "symlink-out": f"{world.target}/escape/app",
        "theirs": str(world.their_target),
        "file": str(world.target / "a-file"),
        "nul": "/tmp/a\x00b",
    }[kind]
    before = counts()
    response = post(owner, restore_body(checkpoint, target=target))
    assert response.status_code == 400, response.content
    fault = response.json()["badRequest"]
    assert fault["message"].startswith("restore_target: ") and expected in fault["message"]
    assert "restore_target" in fault["fields"]
    assert counts() == before and enqueued == []
    assert sorted(os.listdir(world.outside)) == []


def test_restore_in_place_is_400_when_the_operator_forbids_it(owner, world, enqueued):
    checkpoint = write_checkpoint(world, [world.app], provider_id=LOCKED_PROVIDER_ID)
    before = counts()
    response = post(owner, restore_body(checkpoint, target=None))
    assert response.status_code == 400
    message = response.json()["badRequest"]["message"]
    assert "restoring in place is disabled" in message and str(world.target) in message
    assert counts() == before
    assert post(owner, restore_body(checkpoint, target=str(world.target))).status_code == 200


@pytest.mark.parametrize("status", ["protecting", "error", "deleting", "deleted"])
def test_checkpoint_not_available_is_409_and_creates_nothing(owner, world, enqueued, status):
    checkpoint = write_checkpoint(world, [world.app], status=status)
    before = counts()
    response = post(owner, restore_body(checkpoint, target=str(world.target)))
    assert response.status_code == 409
    assert f"is {status}" in response.json()["conflictingRequest"]["message"]
    assert counts() == before and enqueued == []


def test_another_projects_checkpoint_is_404(owner, stranger, world, enqueued):
    theirs = write_checkpoint(world, [world.theirs], project_id=STRANGER_PROJECT)
    before = counts()
    response = post(owner, restore_body(theirs, target=str(world.target)))
    assert response.status_code == 404
    assert "could not be found" in response.json()["itemNotFound"]["message"]
    assert counts() == before


def test_cloud_admin_may_restore_another_projects_checkpoint(cloud_admin, stranger, world, enqueued):
    theirs = write_checkpoint(world, [world.theirs], project_id=STRANGER_PROJECT)
    response = post(cloud_admin, restore_body(theirs, target=str(world.their_target)))
    # The operator acts in the owner's project URL: only that project's targets are allowed.
    assert response.status_code == 400 and "restore_target" in response.json()["badRequest"]["message"]
    response = post(cloud_admin, restore_body(theirs, target=str(world.target / "from-stranger")))
    assert response.status_code == 200, response.content
    assert flows.restore_run(restore_id=response.json()["restore"]["id"]).status == "success"
    assert (world.target / "from-stranger" / "theirs.txt").read_text() == "theirs"


@pytest.mark.parametrize(
    ("change", "status", "expected"),
    [
        ({"provider_id": UNKNOWN}, 404, f"Provider {UNKNOWN} could not be found."),
        ({"checkpoint_id": UNKNOWN}, 404, f"Checkpoint {UNKNOWN} could not be found"),
        ({"provider_id": LOCKED_PROVIDER_ID}, 404, "could not be found in provider"),
    ],
)
def test_unknown_provider_or_checkpoint_is_404(owner, world, enqueued, change, status, expected):
    checkpoint = write_checkpoint(world, [world.app])
    body = restore_body(checkpoint, target=str(world.target))
    body["restore"].update(change)
    before = counts()
    response = post(owner, body)
    assert response.status_code == status
    assert expected in response.json()["itemNotFound"]["message"]
    assert counts() == before


BAD_BODIES = [
    ({"restore": {}}, "provider_id"),
    ("drop:provider_id", "provider_id"),
    ("drop:checkpoint_id", "checkpoint_id"),
    ({"checkpoint_id": "not-a-uuid"}, "checkpoint_id"),
    ({"provider_id": 12}, "provider_id"),
    ({"colour": "red"}, "colour"),
    ({"restore_target": 5}, "restore_target"),
    ({"restore_target": "/x" * 200}, "restore_target"),
    ({"restore_auth": "password"}, "restore_auth"),
    ({"parameters": []}, "parameters"),
    ({"parameters": {"No::Such": {}}}, "parameters.No::Such"),
    ({"parameters": {FS: "overwrite"}}, f"parameters.{FS}"),
    ({"parameters": {FS: {"overwrite": "maybe"}}}, f"parameters.{FS}.overwrite"),
    ({"parameters": {FS: {"colour": "red"}}}, f"parameters.{FS}.colour"),
    ({"parameters": {f"{FS}#not-a-uuid": {}}}, f"parameters.{FS}#not-a-uuid"),
    ({"parameters": {f"{FS}#{UNKNOWN}": {}}}, f"parameters.{FS}#{UNKNOWN}"),
]


@pytest.mark.parametrize(("change", "expected"), BAD_BODIES, ids=[str(i) for i in range(len(BAD_BODIES))])
def test_bad_body_or_parameters_is_400_naming_the_field(owner, world, enqueued, change, expected):
    checkpoint = write_checkpoint(world, [world.app])
    body = restore_body(checkpoint, target=str(world.target))
    if change == {"restore": {}}:
        body = change
    elif isinstance(change, str):
        del body["restore"][change.split(":", 1)[1]]
    else:
        body["restore"].update(change)
    before = counts()
    response = post(owner, body)
    assert response.status_code == 400, response.content
    fault = response.json()["badRequest"]
    assert expected in fault["message"], fault
    assert counts() == before and enqueued == []


def test_bad_envelopes_are_400(owner, world):
    url = owner.url("restores")
    for raw in ("", "{bad", "[]", '{"restore": 3}', '{"restores": {}}'):
        response = owner.client.generic("POST", url, raw, content_type="application/json")
        assert response.status_code == 400, raw
    assert Restore.all_objects.count() == 0


def test_reader_may_not_restore(reader, owner, world, enqueued):
    checkpoint = write_checkpoint(world, [world.app])
    assert post(reader, restore_body(checkpoint, target=str(world.target))).status_code == 403
    assert Restore.all_objects.count() == 0


# --- show / list -----------------------------------------------------------------------------
@pytest.fixture
def three_restores(owner, world, enqueued) -> list[dict]:
    checkpoint = write_checkpoint(world, [world.app])
    made = []
    for index in range(3):
        response = post(owner, restore_body(checkpoint, target=str(world.target / f"r{index}")))
        assert response.status_code == 200
        made.append(response.json()["restore"])
    flows.restore_run(restore_id=made[0]["id"])
    return made


def test_show_and_list_newest_first_with_marker_and_status_filter(owner, three_restores):
    first, second, third = three_restores
    assert owner.client.get(owner.url(f"restores/{second['id']}")).json() == {"restore": second}
    listed = owner.client.get(owner.url("restores"), {"limit": 2}).json()
    assert [r["id"] for r in listed["restores"]] == [third["id"], second["id"]]
    assert f"marker={second['id']}" in listed["restores_links"][0]["href"]
    rest = owner.client.get(owner.url("restores"), {"limit": 2, "marker": second["id"]}).json()
    assert [r["id"] for r in rest["restores"]] == [first["id"]] and rest["restores_links"] == []
    done = owner.client.get(owner.url("restores"), {"status": "success"}).json()["restores"]
    assert [r["id"] for r in done] == [first["id"]]
    asc = owner.client.get(owner.url("restores"), {"sort": "created_at:asc", "offset": 1}).json()["restores"]
    assert [r["id"] for r in asc] == [second["id"], third["id"]]


def test_show_non_uuid_is_400_unknown_404(owner, world):
    assert owner.client.get(owner.url("restores/nope")).status_code == 400
    assert owner.client.get(owner.url(f"restores/{UNKNOWN}")).status_code == 404


def test_stranger_sees_nothing_and_non_admin_filters_are_dropped(owner, stranger, three_restores):
    restore_id = three_restores[0]["id"]
    assert stranger.client.get(stranger.url(f"restores/{restore_id}")).status_code == 404
    assert stranger.client.get(stranger.url("restores"), {"all_tenants": "1"}).json()["restores"] == []
    # project_id is not on the non-admin allow-list: silently ignored, the caller's own rows are listed.
    own = owner.client.get(owner.url("restores"), {"project_id": STRANGER_PROJECT}).json()["restores"]
    assert len(own) == 3
    assert stranger.client.get(owner.url(f"restores/{restore_id}")).status_code == 403


def test_all_tenants_lists_every_project_for_the_cloud_admin(cloud_admin, owner, three_restores):
    everything = cloud_admin.client.get(cloud_admin.url("restores"), {"all_tenants": "true"}).json()["restores"]
    assert len(everything) == 3
    scoped = cloud_admin.client.get(
        cloud_admin.url("restores"), {"all_tenants": "1", "project_id": STRANGER_PROJECT}
    ).json()["restores"]
    assert scoped == []
    mine = cloud_admin.client.get(cloud_admin.url("restores"), {"all_tenants": "1", "project_id": OWNER_PROJECT})
    assert len(mine.json()["restores"]) == 3


def test_operation_log_of_a_restore_records_times_and_progress(owner, three_restores):
    from protection.serializers import OperationLogSerializer

    restore_id = three_restores[0]["id"]
    logs = OperationLog.objects.filter(restore_id=restore_id)
    assert logs.count() == 1
    entry = OperationLogSerializer(logs.get()).data
    assert entry["operation_type"] == "restore" and entry["status"] == "success"
    assert entry["started_at"] and entry["ended_at"]
    assert entry["progress"]["bytes_done"] == entry["progress"]["bytes_total"] > 3 * 1024 * 1024


def test_a_broker_that_cannot_be_reached_fails_the_restore_and_is_a_503(owner, world, monkeypatch):
    from kombu.exceptions import OperationalError

    from karbor_site.errors import ServiceUnavailable
    from operations.runner import operation_enqueue
    from restores.flows import RESTORE_KIND
    from restores.tasks import restore_run_task

    def down(restore_id):
        raise OperationalError("connection refused")

    monkeypatch.setattr(restore_run_task, "delay", down)
    checkpoint = write_checkpoint(world, [world.app])
    restore_id = post(owner, restore_body(checkpoint, target=str(world.target))).json()["restore"]["id"]
    with pytest.raises(ServiceUnavailable) as excinfo:
        operation_enqueue(kind=RESTORE_KIND, row_id=restore_id)
    assert excinfo.value.status_code == 503
    row = Restore.objects.get(pk=restore_id)
    assert row.status == "fail" and "could not be queued: connection refused" in next(iter(row.resources_reason.values()))
    assert OperationLog.objects.get(restore_id=restore_id).status == "fail"
