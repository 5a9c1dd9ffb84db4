"""Copy between banks: through the API into a second provider, restored byte-identical from there;
a second copy after a small change sends little; bad input is a clear 4xx that writes nothing."""
from __future__ import annotations

import pytest
from django.core.management import call_command

from protection import copies, flows, services
from protection.models import Checkpoint, CheckpointStatus, OperationLog
from protection.tests.flowkit import fill_tree, make_plan, trees_equal
from providers import registry as provider_registry
from providers import testing as provider_testing
from providers.testing import OWNER_PROJECT, provider_document, write_provider_file
from restores import flows as restore_flows
from restores import services as restore_services

pytestmark = pytest.mark.django_db

fs_provider = provider_testing.fs_provider
provider_dir = provider_testing.provider_dir

DEST_ID = "a7a1c0de-0000-4000-8000-00000000c0c0"


@pytest.fixture
def world(fs_provider, provider_dir, tmp_path):
    """``fs_provider`` plus a second provider over the same sources, with its own bank and a restore target."""
    restore_dir = tmp_path / "restored"
    restore_dir.mkdir()
    write_provider_file(provider_dir, provider_document(
        provider_id=DEST_ID, name="Second bank", bank_path=tmp_path / "bank2",
        sources=[{"name": "data", "path": str(fs_provider.paths["data"]), "projects": ["*"], "subdirectories": True}],
        restore_targets=[{"path": str(restore_dir), "projects": [OWNER_PROJECT]}],
    ))
    provider_registry.clear()
    (fs_provider.paths["data"] / "escape").unlink()
    fill_tree(fs_provider.paths["data"], files=20, size=256 * 1024)
    fs_provider.restore_dir = restore_dir
    return fs_provider


def protect(plan) -> Checkpoint:
    checkpoint = services.checkpoint_create(
        project_id=plan.project_id, provider_id=plan.provider_id, plan_id=plan.id, enqueue=False
    )
    result = flows.checkpoint_protect_run(checkpoint_id=checkpoint.id)
    assert result.status == CheckpointStatus.AVAILABLE, result.status_reason
    return result


def copy_url(tenant, provider_id: str) -> str:
    return tenant.url(f"providers/{provider_id}/checkpoints/action")


def copy_details(copy_id: str) -> dict:
    entry = OperationLog.objects.get(checkpoint_id=copy_id, operation_type="copy")
    [details] = entry.extra_info["resources"].values()
    return details


def test_a_copy_through_the_api_restores_byte_identical_from_the_second_bank(owner, world):
    plan = make_plan(world)
    original = protect(plan)
    response = owner.client.post(copy_url(owner, world.provider_id), {
        "copy": {"plan_id": plan.id, "parameters": {"destination_provider_id": DEST_ID}},
    }, format="json")
    assert response.status_code == 200, response.content
    body = response.json()["copy"]
    [pair] = body["checkpoint_id"]
    assert pair["checkpoint_protect_id"] == original.id and body["plan_id"] == plan.id
    copy = Checkpoint.objects.get(pk=pair["checkpoint_copy_id"])
    assert copy.status == CheckpointStatus.COPYING and copy.provider_id == DEST_ID and copy.copy_of == original.id

    copy = copies.checkpoint_copy_run(checkpoint_id=copy.id)
    assert copy.status == CheckpointStatus.AVAILABLE, copy.status_reason
    assert copy.extra_info["copy_status"] == "finished"
    assert copy.resources_status == original.resources_status
    listed = owner.client.get(owner.url(f"providers/{DEST_ID}/checkpoints")).json()["checkpoints"]
    assert [item["id"] for item in listed] == [copy.id]

    restore = restore_services.restore_create(
        project_id=OWNER_PROJECT, provider_id=DEST_ID, checkpoint_id=copy.id,
        restore_target=str(world.restore_dir), enqueue=False,
    )
    restore = restore_flows.restore_run(restore_id=restore.id)
    assert restore.status == "success", restore.resources_reason
    restored = [path for path in world.restore_dir.rglob("file0.bin")]
    assert restored, "nothing restored"
    assert trees_equal(world.paths["data"], restored[0].parent.parent.parent)

    # Copying again sends nothing: the destination holds that checkpoint already.
    again = owner.client.post(copy_url(owner, world.provider_id), {
        "copy": {"plan_id": plan.id, "parameters": {"destination_provider_id": DEST_ID}},
    }, format="json")
    assert again.status_code == 200 and again.json()["copy"]["checkpoint_id"] == []


def test_a_second_copy_after_a_five_percent_change_sends_under_ten_percent(owner, world, capsys):
    plan = make_plan(world)
    protect(plan)
    first = copies.checkpoint_copy_create(
        project_id=OWNER_PROJECT, provider_id=world.provider_id, plan_id=plan.id,
        parameters={"destination_provider_id": DEST_ID}, enqueue=False,
    )
    copies.checkpoint_copy_run(checkpoint_id=first["checkpoint_id"][0]["checkpoint_copy_id"])
    # Rewrite one file of twenty: 5 % of the data.
    changed = next(world.paths["data"].rglob("file7.bin"))
    changed.write_bytes(bytes(reversed(changed.read_bytes())))
    second_original = protect(plan)
    second = copies.checkpoint_copy_create(
        project_id=OWNER_PROJECT, provider_id=world.provider_id, plan_id=plan.id,
        parameters={"destination_provider_id": DEST_ID}, enqueue=False,
    )
    [pair] = second["checkpoint_id"]
    assert pair["checkpoint_protect_id"] == second_original.id
    copy = copies.checkpoint_copy_run(checkpoint_id=pair["checkpoint_copy_id"])
    assert copy.status == CheckpointStatus.AVAILABLE, copy.status_reason
    details = copy_details(copy.id)
    sent = details["bytes_new"] / details["bytes"]
    with capsys.disabled():
        print(f"\nsecond copy after a 5 % change: {details['bytes_new']} of {details['bytes']} bytes new "
              f"({sent:.1%}), {details['bytes_read']} read from the source")
    assert sent < 0.10
    assert details["bytes_read"] < 0.10 * details["bytes"]


def test_copy_bad_input_is_a_4xx_naming_the_field_and_creates_nothing(owner, stranger, world):
    plan = make_plan(world)
    original = protect(plan)
    url = copy_url(owner, world.provider_id)

    def post(body, tenant=owner, target=url):
        return tenant.client.post(target, body, format="json")

    def fault(response) -> tuple[int, str]:
        [(_, payload)] = response.json().items()
        return response.status_code, payload["message"]

    before = Checkpoint.all_objects.count()
    code, message = fault(post({"copy": {"plan_id": plan.id, "parameters": {"destination_provider_id": world.provider_id}}}))
    assert code == 400 and "destination_provider_id" in message
    code, message = fault(post({"copy": {"plan_id": plan.id, "parameters": {
        "destination_provider_id": "a7a1c0de-0000-4000-8000-000000000999"}}}))
    assert code == 404 and "a7a1c0de-0000-4000-8000-000000000999" in message
    code, message = fault(post({"copy": {"plan_id": plan.id, "parameters": {}}}))
    assert code == 400 and "destination_provider_id" in message
    code, message = fault(post({"copy": {"plan_id": plan.id, "parameters": "x"}}))
    assert code == 400 and "parameters" in message
    code, message = fault(post({"copy": {"parameters": {"destination_provider_id": DEST_ID}}}))
    assert code == 400 and "plan_id" in message
    # Another project's plan is not found; so is its checkpoint.
    code, _ = fault(post({"copy": {"plan_id": plan.id, "parameters": {"destination_provider_id": DEST_ID}}},
                         tenant=stranger, target=copy_url(stranger, world.provider_id)))
    assert code == 404
    # A checkpoint that is not available.
    Checkpoint.objects.filter(pk=original.pk).update(status=CheckpointStatus.ERROR)
    code, message = fault(post({"copy": {"plan_id": plan.id, "parameters": {
        "destination_provider_id": DEST_ID, "checkpoint_id": original.pk}}}))
    assert code == 409 and "error" in message
    # A plan never protected.
    unprotected = make_plan(world, name="never")
    code, message = fault(post({"copy": {"plan_id": unprotected.id, "parameters": {"destination_provider_id": DEST_ID}}}))
    assert code == 400 and "has not been protected" in message
    assert Checkpoint.all_objects.count() == before


def test_the_source_cannot_be_deleted_while_it_is_copied(owner, world):
    plan = make_plan(world)
    original = protect(plan)
    copies.checkpoint_copy_create(
        project_id=OWNER_PROJECT, provider_id=world.provider_id, plan_id=plan.id,
        parameters={"destination_provider_id": DEST_ID}, enqueue=False,
    )
    response = owner.client.delete(owner.url(f"providers/{world.provider_id}/checkpoints/{original.id}"))
    assert response.status_code == 409 and "copy" in str(response.json())
    assert Checkpoint.objects.get(pk=original.pk).status == CheckpointStatus.AVAILABLE


def test_manage_py_copy_runs_in_process_and_the_catalog_rebuilds_the_copy_from_the_bank(owner, world, capsys):
    plan = make_plan(world)
    protect(plan)
    call_command("copy", plan.id, "--to", DEST_ID, "--no-progress")
    out = capsys.readouterr().out
    copy = Checkpoint.objects.get(provider_id=DEST_ID)
    assert f"checkpoint {copy.id}: available" in out
    Checkpoint.all_objects.filter(pk=copy.pk).delete()
    report = services.catalog_rebuild(provider_id=DEST_ID)
    rebuilt = Checkpoint.objects.get(pk=copy.pk)
    assert rebuilt.provider_id == DEST_ID and rebuilt.status == CheckpointStatus.AVAILABLE
    assert rebuilt.extra_info["copy_status"] == "finished" and copy.id in str(report)
