"""The protect and delete flows against real directory trees and real banks (local files, a moto S3 server)."""
from __future__ import annotations

import shutil

import pytest

from protection import flows, services
from karbor_site.testing.servers import running_in_ci
from operations.heartbeat import FlowHeartbeat
from protection.verifications.flows import verification_run
from protection.verifications.services import verification_create
from restores.flows import restore_run
from restores.services import restore_create
from protection.bank import Bank
from protection.gc import bank_gc
from protection.banks import bank_for_provider, forget_banks, resource_prefix
from protection.models import Checkpoint, OperationLog
from protection.tests.flowkit import FS, fill_tree, make_plan, trees_equal
from providers.registry import get_registry
from providers import testing as provider_testing
from providers.testing import FS_PROVIDER_ID, OWNER_PROJECT, provider_document, write_provider_file

# The shared fixtures (a Filesystem provider over tmp dirs).
fs_provider = provider_testing.fs_provider
provider_dir = provider_testing.provider_dir


def protect(plan, **kwargs) -> Checkpoint:
    checkpoint = services.checkpoint_create(
        project_id=OWNER_PROJECT, provider_id=FS_PROVIDER_ID, plan_id=plan.id, enqueue=False, **kwargs
    )
    return flows.checkpoint_protect_run(checkpoint_id=checkpoint.id, worker="test-worker:1")


def bank() -> Bank:
    return bank_for_provider(get_registry().get(FS_PROVIDER_ID))


@pytest.fixture
def tree(fs_provider):
    root = fs_provider.paths["data"]
    (root / "escape").unlink()  # keep the tree self-contained for byte comparisons
    fill_tree(root, files=12, size=96 * 1024)
    return root


def test_protect_stores_tree_and_manifest_restores_byte_identical(db, fs_provider, tree, tmp_path):
    plan = make_plan(fs_provider)
    checkpoint = protect(plan, extra_info={"why": "test"})
    assert checkpoint.status == "available", checkpoint.status_reason
    key = f"{FS}#{fs_provider.id_of('data')}"
    assert checkpoint.resources_status == {key: "available"}
    saved = checkpoint.saved_info[key]
    assert saved["path"] == str(tree.resolve()) and saved["files"] == 14 and saved["bytes"] > 12 * 96 * 1024
    assert checkpoint.bytes_done == saved["bytes"] and checkpoint.worker == "test-worker:1"

    manifest = bank().read_manifest(checkpoint.id)
    meta = manifest.meta["checkpoint"]
    assert meta["id"] == checkpoint.id and meta["plan_id"] == plan.id and meta["status"] == "available"
    assert meta["resources_status"] == {key: "available"} and meta["extra_info"]["why"] == "test"
    assert meta["saved_info"][key]["files"] == 14

    dest = tmp_path / "restored"
    bank().restore_tree(checkpoint.id, str(dest), prefix=resource_prefix(FS, fs_provider.id_of("data")))
    assert trees_equal(tree, dest)

    log = OperationLog.objects.get(checkpoint_id=checkpoint.id, operation_type="protect")
    assert log.status == "available" and log.ended_at is not None and log.bytes_done == saved["bytes"]


def test_second_checkpoint_is_incremental(db, fs_provider, tree):
    plan = make_plan(fs_provider)
    first = protect(plan)
    (tree / "dir0" / "added.bin").write_bytes(b"new data " * 1000)
    second = protect(plan)
    assert second.status == "available", second.status_reason
    key = f"{FS}#{fs_provider.id_of('data')}"
    manifest = bank().read_manifest(second.id)
    assert manifest.parent_id == first.id
    assert second.saved_info[key]["bytes_reused"] >= first.saved_info[key]["bytes"] - 100
    assert second.saved_info[key]["new_bytes"] < 64 * 1024


def test_exclude_patterns_skip_entries(db, fs_provider, tree, tmp_path):
    (tree / "cache").mkdir()
    (tree / "cache" / "big.bin").write_bytes(b"x" * 5000)
    (tree / "dir1" / "scratch.tmp").write_text("temporary")
    plan = make_plan(fs_provider, parameters={FS: {"exclude": ["*.tmp", "cache/**"]}})
    checkpoint = protect(plan)
    assert checkpoint.status == "available", checkpoint.status_reason
    dest = tmp_path / "restored"
    bank().restore_tree(checkpoint.id, str(dest), prefix=resource_prefix(FS, fs_provider.id_of("data")))
    assert not (dest / "cache").exists() and not (dest / "dir1" / "scratch.tmp").exists()
    assert (dest / "notes.txt").read_text() == "small text file\n"
    assert checkpoint.saved_info[f"{FS}#{fs_provider.id_of('data')}"]["excluded"] == 3


def test_removed_source_fails_that_resource_and_leaves_no_manifest(db, fs_provider, tree):
    plan = make_plan(fs_provider, keys=("data", "b"))
    shutil.rmtree(fs_provider.paths["b"])
    checkpoint = protect(plan)
    assert checkpoint.status == "error"
    data_key, b_key = (f"{FS}#{fs_provider.id_of(k)}" for k in ("data", "b"))
    assert checkpoint.resources_status == {data_key: "available", b_key: "error"}
    assert "no longer available" in checkpoint.resources_reason[b_key]
    assert b_key in checkpoint.status_reason
    assert not bank().manifest_exists(checkpoint.id)
    log = OperationLog.objects.get(checkpoint_id=checkpoint.id)
    assert log.status == "error" and "no longer available" in log.error_info


def test_redelivered_task_for_finished_checkpoint_is_a_no_op(db, fs_provider, tree):
    checkpoint = protect(make_plan(fs_provider))
    again = flows.checkpoint_protect_run(checkpoint_id=checkpoint.id, worker="other:2")
    assert again.status == "available" and again.worker == "test-worker:1"
    assert flows.checkpoint_protect_run(checkpoint_id="00000000-0000-4000-8000-000000000000") is None


def test_protect_is_skipped_when_another_worker_holds_the_row(db, fs_provider, tree):
    checkpoint = services.checkpoint_create(
        project_id=OWNER_PROJECT, provider_id=FS_PROVIDER_ID, plan_id=make_plan(fs_provider).id, enqueue=False
    )
    Checkpoint.objects.filter(pk=checkpoint.id).update(worker="busy:9")
    result = flows.checkpoint_protect_run(checkpoint_id=checkpoint.id, worker="me:1")
    assert result.status == "protecting" and result.worker == "busy:9"


def test_delete_removes_manifest_and_gc_reclaims_space(db, fs_provider, tree, settings):
    settings.KARBOR_BANK_GC_GRACE_SECONDS = 0
    checkpoint = protect(make_plan(fs_provider))
    stored = bank().stored_bytes()
    services.checkpoint_delete(checkpoint=checkpoint, enqueue=False)
    deleted = flows.checkpoint_delete_run(checkpoint_id=checkpoint.id, worker="w:1")
    assert deleted.status == "deleted" and deleted.deleted
    assert not bank().manifest_exists(checkpoint.id)
    assert bank_gc(FS_PROVIDER_ID) == "done"  # the one batched GC the delete asked for
    assert bank().stored_bytes() < stored / 2


def test_delete_is_done_even_when_gc_is_locked(db, fs_provider, tree, monkeypatch):
    from protection.bank import BankLockedError

    checkpoint = protect(make_plan(fs_provider))

    def locked(self, **kwargs):
        raise BankLockedError("another garbage collection is running")

    monkeypatch.setattr(Bank, "gc", locked)
    services.checkpoint_delete(checkpoint=checkpoint, enqueue=False)
    assert flows.checkpoint_delete_run(checkpoint_id=checkpoint.id, worker="w:1").status == "deleted"


def test_rebuild_catalog_recreates_rows_from_the_bank(db, fs_provider, tree):
    checkpoint = protect(make_plan(fs_provider), extra_info={"k": "v"})
    Checkpoint.all_objects.all().delete()
    report = services.catalog_rebuild()
    assert report.created == [checkpoint.id]
    row = Checkpoint.objects.get(pk=checkpoint.id)
    assert (row.status, row.plan_id, row.project_id) == ("available", checkpoint.plan_id, OWNER_PROJECT)
    assert row.extra_info == {"k": "v", "created_by": "manual"}
    assert row.resources_status == checkpoint.resources_status and row.saved_info == checkpoint.saved_info
    assert row.created_at == checkpoint.created_at


@pytest.mark.server
def test_protect_restore_and_verify_with_an_s3_bank(db, fs_provider, tree, provider_dir, tmp_path, settings):
    from protection.tests.bank.s3server import ACCESS_KEY, SECRET_KEY, S3ServerUnavailable, start_moto_server

    try:
        server = start_moto_server()
    except S3ServerUnavailable as exc:
        if running_in_ci():
            pytest.fail(f"{exc} (CI=true: server tests must not be skipped)", pytrace=False)
        pytest.skip(str(exc))
    try:
        targets = tmp_path / "targets"
        targets.mkdir()
        settings.KARBOR_TEST_S3_ACCESS = ACCESS_KEY
        settings.KARBOR_TEST_S3_SECRET = SECRET_KEY
        document = provider_document(
            provider_id=FS_PROVIDER_ID, name="S3 provider", bank_path=tmp_path / "unused",
            sources=[{"name": "data", "path": str(tree), "projects": ["*"], "subdirectories": True, "max_depth": 2}],
            restore_targets=[{"path": str(targets), "projects": ["*"]}],
        )
        document["bank"] = {
            "type": "s3", "bucket": "karbor-flow-test", "prefix": "bank", "endpoint_url": server.endpoint_url,
            "region": "us-east-1", "access_key_env": "KARBOR_TEST_S3_ACCESS", "secret_key_env": "KARBOR_TEST_S3_SECRET",
        }
        write_provider_file(provider_dir, document, filename=f"{FS_PROVIDER_ID}.yaml")
        from providers import registry

        registry.clear()
        forget_banks()
        plan = make_plan(fs_provider)
        checkpoint = protect(plan)
        assert checkpoint.status == "available", checkpoint.status_reason
        s3_bank = bank()
        assert s3_bank.backend.describe().startswith("s3://") or "s3" in type(s3_bank.backend).__name__.lower()
        dest = tmp_path / "restored"
        s3_bank.restore_tree(checkpoint.id, str(dest), prefix=resource_prefix(FS, fs_provider.id_of("data")))
        assert trees_equal(tree, dest)
        assert s3_bank.check(read_data=True).ok

        # The restore and verify flows read the same S3 bank.
        restore = restore_create(project_id=OWNER_PROJECT, provider_id=FS_PROVIDER_ID, checkpoint_id=checkpoint.id,
                                 restore_target=str(targets / "copy"), enqueue=False)
        restore = restore_run(restore_id=restore.id, worker="test-worker:1")
        assert restore.status == "success", restore.resources_reason
        assert trees_equal(tree, targets / "copy")
        verification = verification_create(project_id=OWNER_PROJECT, provider_id=FS_PROVIDER_ID,
                                           checkpoint_id=checkpoint.id, enqueue=False)
        verification = verification_run(verification_id=verification.id, worker="test-worker:1")
        assert verification.status == "success", verification.resources_reason
    finally:
        forget_banks()
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_flow_heartbeat_thread_refreshes_the_row_until_it_is_no_longer_ours(fs_provider):
    import time

    checkpoint = services.checkpoint_create(
        project_id=OWNER_PROJECT, provider_id=FS_PROVIDER_ID, plan_id=make_plan(fs_provider).id, enqueue=False
    )
    Checkpoint.objects.filter(pk=checkpoint.id).update(worker="me:1", heartbeat_at=None)
    with FlowHeartbeat(model=Checkpoint, pk=checkpoint.id, status="protecting", worker="me:1", interval=0.2):
        time.sleep(0.7)  # a long plugin call: only the thread writes
        first = Checkpoint.objects.get(pk=checkpoint.id).heartbeat_at
        assert first is not None
        time.sleep(0.5)
        assert Checkpoint.objects.get(pk=checkpoint.id).heartbeat_at > first
        Checkpoint.objects.filter(pk=checkpoint.id).update(status="error")  # e.g. failed by the reaper
        time.sleep(0.5)
        stopped = Checkpoint.objects.get(pk=checkpoint.id).heartbeat_at
        time.sleep(0.5)
        assert Checkpoint.objects.get(pk=checkpoint.id).heartbeat_at == stopped


def test_broker_refusing_the_task_fails_the_checkpoint_with_the_reason(db, fs_provider, monkeypatch,
                                                                       django_capture_on_commit_callbacks):
    from kombu.exceptions import OperationalError

    from karbor_site.errors import ServiceUnavailable
    from protection import tasks

    def refuse(checkpoint_id):
        raise OperationalError("broker unreachable")

    monkeypatch.setattr(tasks.checkpoint_protect, "delay", refuse)
    with pytest.raises(ServiceUnavailable), django_capture_on_commit_callbacks(execute=True):
        services.checkpoint_create(project_id=OWNER_PROJECT, provider_id=FS_PROVIDER_ID, plan_id=make_plan(fs_provider).id)
    row = Checkpoint.objects.get()
    checkpoint = row
    assert row.status == "error" and "could not be queued" in row.status_reason and "broker unreachable" in row.status_reason
    assert OperationLog.objects.get(checkpoint_id=checkpoint.id).status == "error"


def test_redelivered_delete_of_a_deleted_checkpoint_is_a_no_op(db, fs_provider, tree):
    checkpoint = protect(make_plan(fs_provider))
    services.checkpoint_delete(checkpoint=checkpoint, enqueue=False)
    assert flows.checkpoint_delete_run(checkpoint_id=checkpoint.id, worker="w:1").status == "deleted"
    again = flows.checkpoint_delete_run(checkpoint_id=checkpoint.id, worker="w:2")
    assert again.status == "deleted" and again.worker == "w:1"
    assert OperationLog.objects.filter(checkpoint_id=checkpoint.id, operation_type="delete").count() == 1


def test_unexpected_plugin_error_fails_the_checkpoint_and_its_running_resources(db, fs_provider, tree, monkeypatch):
    from providers.plugins.filesystem import FilesystemDirectoryPlugin

    def broken(self, context):
        raise ValueError("plugin bug")

    monkeypatch.setattr(FilesystemDirectoryPlugin, "protect", broken)
    checkpoint = protect(make_plan(fs_provider))
    key = f"{FS}#{fs_provider.id_of('data')}"
    assert checkpoint.status == "error" and "ValueError: plugin bug" in checkpoint.status_reason
    assert checkpoint.resources_status == {key: "error"} and "plugin bug" in checkpoint.resources_reason[key]
    assert not bank().manifest_exists(checkpoint.id)


def test_rebuild_catalog_marks_available_rows_without_manifest_as_error(db, fs_provider, tree):
    checkpoint = protect(make_plan(fs_provider))
    bank().delete_manifest(checkpoint.id)
    report = services.catalog_rebuild(provider_id=FS_PROVIDER_ID)
    assert report.missing == [checkpoint.id] and not report.created
    row = Checkpoint.objects.get(pk=checkpoint.id)
    assert row.status == "error" and "manifest is missing" in row.status_reason


def test_resources_are_protected_after_the_resources_they_contain(db, fs_provider, monkeypatch):
    from providers.plugins.base import Instance
    from providers.plugins.filesystem import FilesystemDirectoryPlugin

    data_id, a_id, b_id = (fs_provider.id_of(k) for k in ("data", "a", "b"))
    # Pretend a directory contains its subdirectories (the real plugin declares no parents).
    monkeypatch.setattr(FilesystemDirectoryPlugin, "parent_types", (FS,))

    def dependencies(self, *, project_id, instance):
        return [Instance(id=a_id, type=FS, name="data/a")] if instance.id == data_id else []

    monkeypatch.setattr(FilesystemDirectoryPlugin, "dependencies", dependencies)
    resources = [{"id": data_id, "type": FS, "name": "data"}, {"id": b_id, "type": FS, "name": "data/b"},
                 {"id": a_id, "type": FS, "name": "data/a"}]
    ordered, children = flows.ordered_resources(
        provider=get_registry().get(FS_PROVIDER_ID), project_id=OWNER_PROJECT, resources=resources
    )
    assert [r["id"] for r in ordered] == [a_id, data_id, b_id]
    assert children == {f"{FS}#{data_id}": [f"{FS}#{a_id}"]}
    nodes, adjacency = flows.resource_graph_for(ordered, children)
    assert nodes["0x0"][1] == a_id and nodes["0x1"][1] == data_id
    assert adjacency == [["0x1", ["0x0"]]]
