"""Verifications (contract §2.10): the API, the verify flow over a real bank, damage detection, the command."""
from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from protection.bank.index import pack_key
from protection.banks import bank_for_provider, resource_prefix
from protection.models import OperationLog, Verification
from protection.tasks import verification_run_task
from protection.verifications.flows import verification_run
from protection.verifications.services import verification_admin_action, verification_create
from providers import testing as provider_testing
from providers.testing import OWNER_PROJECT, STRANGER_PROJECT
from restores.tests import kit
from restores.tests.kit import FS, UNICODE_NAME, World, write_checkpoint

# Fixtures shared with restores/tests (a provider over tmp dirs, checkpoints written per the bank contract).
provider_dir = provider_testing.provider_dir
world = kit.world

pytestmark = pytest.mark.django_db

UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def enqueued(monkeypatch) -> list[str]:
    sent: list[str] = []
    monkeypatch.setattr(verification_run_task, "delay", lambda verification_id: sent.append(verification_id))
    return sent


def body(checkpoint, **extra) -> dict:
    return {"verification": {"provider_id": checkpoint.provider_id, "checkpoint_id": checkpoint.id, "parameters": {}, **extra}}


def flip_byte_of(world: World, checkpoint, item_name: str) -> None:
    """Flip one byte inside the sealed blob of the first chunk of ``item_name`` in the local bank's pack."""
    bank = bank_for_provider(world.provider)
    manifest = bank.read_manifest(checkpoint.id)
    resource_id = checkpoint.protection_plan["resources"][0]["id"]
    full = f"{resource_prefix(FS, resource_id)}/{item_name}"
    (item,) = [i for i in manifest.items() if i.path == full]
    location = bank.load_lookup(refresh=True)[item.chunks[0][0]]
    pack = world.bank / pack_key(location.pack)
    data = bytearray(pack.read_bytes())
    data[location.offset + location.length // 2] ^= 0x01
    pack.write_bytes(bytes(data))


def counts() -> tuple[int, int]:
    return Verification.all_objects.count(), OperationLog.all_objects.filter(operation_type="verify").count()


# --- API -------------------------------------------------------------------------------------
def test_create_answers_in_progress_then_the_flow_verifies_every_item(owner, world, enqueued, django_capture_on_commit_callbacks):
    checkpoint = write_checkpoint(world, [world.app, world.shared])
    with django_capture_on_commit_callbacks(execute=True):
        response = owner.client.post(owner.url("verifications"), body(checkpoint), format="json")
    assert response.status_code == 200, response.content
    created = response.json()["verification"]
    assert set(created) == {
        "id", "project_id", "provider_id", "checkpoint_id", "parameters", "status", "resources_status", "resources_reason"
    }
    assert (created["status"], created["parameters"], created["resources_status"]) == ("in_progress", {}, {})
    assert enqueued == [created["id"]]
    entry = OperationLog.objects.get(pk=created["id"])
    assert (entry.operation_type, entry.status, entry.restore_id) == ("verify", "in_progress", None)
    assert entry.extra_info == {"verification_id": created["id"]}

    assert verification_run_task(created["id"]) == "success"
    shown = owner.client.get(owner.url(f"verifications/{created['id']}")).json()["verification"]
    assert shown["status"] == "success"
    assert sorted(shown["resources_status"].values()) == ["available", "available"] and shown["resources_reason"] == {}
    entry.refresh_from_db()
    assert entry.status == "success" and entry.ended_at and entry.bytes_done == entry.bytes_total > 3 * 1024 * 1024
    details = entry.extra_info["resources"]
    assert sum(d["files"] for d in details.values()) == 9 and all(d["chunks"] >= 1 for d in details.values())


def test_a_flipped_byte_in_a_pack_fails_the_verification_naming_the_item(owner, world, enqueued):
    checkpoint = write_checkpoint(world, [world.app])
    flip_byte_of(world, checkpoint, UNICODE_NAME)
    response = owner.client.post(owner.url("verifications"), body(checkpoint), format="json")
    verification = verification_run(verification_id=response.json()["verification"]["id"])
    assert verification.status == "fail"
    (key,) = verification.resources_status
    assert verification.resources_status[key] == "error"
    reason = verification.resources_reason[key]
    assert reason.startswith("1 damaged item(s): ") and repr(UNICODE_NAME) in reason
    entry = OperationLog.objects.get(pk=verification.id)
    assert entry.status == "fail" and UNICODE_NAME in entry.error_info


def test_a_damaged_large_file_is_named_and_the_rest_still_checked(world):
    checkpoint = write_checkpoint(world, [world.app])
    flip_byte_of(world, checkpoint, "large.bin")
    verification = verification_create(project_id=OWNER_PROJECT, provider_id=checkpoint.provider_id, checkpoint_id=checkpoint.id)
    verification = verification_run(verification_id=verification.id)
    (reason,) = verification.resources_reason.values()
    assert "'large.bin'" in reason and "small.txt" not in reason
    assert verification.status == "fail"


def test_a_missing_pack_fails_the_verification(world):
    checkpoint = write_checkpoint(world, [world.app])
    for pack in (world.bank / "packs").rglob("*"):
        if pack.is_file():
            pack.unlink()
    verification = verification_create(project_id=OWNER_PROJECT, provider_id=checkpoint.provider_id, checkpoint_id=checkpoint.id)
    verification = verification_run(verification_id=verification.id)
    assert verification.status == "fail"
    assert "missing" in " ".join(verification.resources_reason.values())


@pytest.mark.parametrize("parameters", [{FS: {"deep": True}}, {"x": {}}])
def test_non_empty_parameters_are_400_and_create_nothing(owner, world, enqueued, parameters):
    checkpoint = write_checkpoint(world, [world.app])
    before = counts()
    response = owner.client.post(owner.url("verifications"), body(checkpoint, parameters=parameters), format="json")
    assert response.status_code == 400
    assert "parameters: verifications take no parameters" in response.json()["badRequest"]["message"]
    assert counts() == before and enqueued == []


def test_checkpoint_not_available_is_409_and_another_projects_is_404(owner, world, enqueued):
    protecting = write_checkpoint(world, [world.app], status="protecting")
    theirs = write_checkpoint(world, [world.theirs], project_id=STRANGER_PROJECT)
    before = counts()
    response = owner.client.post(owner.url("verifications"), body(protecting), format="json")
    assert response.status_code == 409 and "is protecting" in response.json()["conflictingRequest"]["message"]
    assert owner.client.post(owner.url("verifications"), body(theirs), format="json").status_code == 404
    unknown = body(protecting, provider_id=UNKNOWN)
    assert owner.client.post(owner.url("verifications"), unknown, format="json").status_code == 404
    for bad in ({"verification": {"checkpoint_id": protecting.id}}, body(protecting, colour=1), body(protecting, checkpoint_id="x")):
        assert owner.client.post(owner.url("verifications"), bad, format="json").status_code == 400
    assert counts() == before


def test_list_show_filter_and_tenancy(owner, stranger, cloud_admin, world, enqueued):
    checkpoint = write_checkpoint(world, [world.app])
    ids = [owner.client.post(owner.url("verifications"), body(checkpoint), format="json").json()["verification"]["id"] for _ in range(3)]
    verification_run(verification_id=ids[0])
    listed = owner.client.get(owner.url("verifications"), {"limit": 2}).json()
    assert [v["id"] for v in listed["verifications"]] == [ids[2], ids[1]] and listed["verifications_links"]
    assert [v["id"] for v in owner.client.get(owner.url("verifications"), {"status": "success"}).json()["verifications"]] == [ids[0]]
    assert owner.client.get(owner.url("verifications/bad")).status_code == 400
    assert owner.client.get(owner.url(f"verifications/{UNKNOWN}")).status_code == 404
    assert stranger.client.get(stranger.url(f"verifications/{ids[0]}")).status_code == 404
    assert stranger.client.get(stranger.url("verifications"), {"all_tenants": "1"}).json()["verifications"] == []
    assert len(cloud_admin.client.get(cloud_admin.url("verifications"), {"all_tenants": "1"}).json()["verifications"]) == 3


def test_reader_may_not_verify(reader, world):
    checkpoint = write_checkpoint(world, [world.app])
    assert reader.client.post(reader.url("verifications"), body(checkpoint), format="json").status_code == 403


def test_redelivered_task_for_a_finished_verification_returns_quietly(world):
    checkpoint = write_checkpoint(world, [world.app])
    verification = verification_create(project_id=OWNER_PROJECT, provider_id=checkpoint.provider_id, checkpoint_id=checkpoint.id)
    assert verification_run_task(verification.id) == "success"
    flip_byte_of(world, checkpoint, "small.txt")
    assert verification_run_task(verification.id) == "success"  # not run again
    assert verification_run_task(UNKNOWN) is None


# --- command and admin action ------------------------------------------------------------------
def test_verify_command_succeeds_then_exits_non_zero_on_damage(world, capsys):
    checkpoint = write_checkpoint(world, [world.app])
    call_command("verify", checkpoint.id)
    assert "success" in capsys.readouterr().out
    flip_byte_of(world, checkpoint, "sub/a.txt")
    with pytest.raises(CommandError, match="fail"):
        call_command("verify", checkpoint.id)
    assert "'sub/a.txt'" in capsys.readouterr().out
    with pytest.raises(CommandError, match="not in the catalog"):
        call_command("verify", UNKNOWN)
    assert Verification.objects.filter(checkpoint_id=checkpoint.id).count() == 2


class _RecordingAdmin:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def message_user(self, request, message, level=None) -> None:
        self.messages.append(message)


def test_admin_action_starts_one_verification_per_checkpoint(world, enqueued):
    from protection.models import Checkpoint

    good = write_checkpoint(world, [world.app])
    bad = write_checkpoint(world, [world.shared], status="error")
    modeladmin = _RecordingAdmin()
    verification_admin_action(modeladmin, None, Checkpoint.objects.filter(pk__in=[good.id, bad.id]))
    assert Verification.objects.filter(checkpoint_id=good.id).count() == 1
    assert not Verification.objects.filter(checkpoint_id=bad.id).exists()
    assert any("1 verification(s) started" in m for m in modeladmin.messages)
    assert any("is error" in m for m in modeladmin.messages)


def test_a_checkpoint_missing_from_the_bank_fails_with_the_reason(world):
    checkpoint = write_checkpoint(world, [world.app])
    verification = verification_create(project_id=OWNER_PROJECT, provider_id=checkpoint.provider_id, checkpoint_id=checkpoint.id)
    bank_for_provider(world.provider).delete_manifest(checkpoint.id)
    verification = verification_run(verification_id=verification.id)
    assert verification.status == "fail" and verification.resources_status == {}
    assert "not found in the bank" in verification.resources_reason["*"]
    entry = OperationLog.objects.get(pk=verification.id)
    assert entry.status == "fail" and entry.ended_at and "not found in the bank" in entry.error_info
