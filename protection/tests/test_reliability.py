"""The reliability promises of checkpoints: one protect per plan, no delete under a reader, a commit
point the reaper and rebuild_catalog reconcile, 503 with the broker down, batched GC, error-deleting."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from karbor_site.errors import Conflict
from operations import reaper
from protection import flows, services
from protection.bank import Bank
from protection.bank.writer import Writer
from protection.banks import bank_for_provider
from protection.gc import bank_gc, bank_gc_request
from protection.models import BankGcRequest, Checkpoint, OperationLog
from protection.tests.flowkit import FS, make_plan
from providers import testing as provider_testing
from providers.registry import get_registry
from providers.testing import FS_PROVIDER_ID, OWNER_PROJECT
from restores.models import Restore
from restores.services import restore_create

fs_provider = provider_testing.fs_provider
provider_dir = provider_testing.provider_dir


def create(plan, **kwargs) -> Checkpoint:
    return services.checkpoint_create(
        project_id=OWNER_PROJECT, provider_id=FS_PROVIDER_ID, plan_id=plan.id, enqueue=False, **kwargs
    )


def protect(plan) -> Checkpoint:
    return flows.checkpoint_protect_run(checkpoint_id=create(plan).id, worker="test-worker:1")


def bank() -> Bank:
    return bank_for_provider(get_registry().get(FS_PROVIDER_ID))


def checkpoints_url(tenant) -> str:
    return tenant.url(f"providers/{FS_PROVIDER_ID}/checkpoints")


# --- one protect per plan ---------------------------------------------------------------------
def test_a_second_protect_of_a_plan_that_is_protecting_is_refused_409(owner, fs_provider):
    plan = make_plan(fs_provider)
    first = owner.client.post(checkpoints_url(owner), {"checkpoint": {"plan_id": plan.id}}, format="json")
    assert first.status_code == 200
    second = owner.client.post(checkpoints_url(owner), {"checkpoint": {"plan_id": plan.id}}, format="json")
    assert second.status_code == 409, second.content
    assert "plan_id" in second.json()["conflictingRequest"]["fields"]
    assert Checkpoint.objects.filter(plan_id=plan.id).count() == 1
    # Once the first one ran, the plan can be protected again.
    flows.checkpoint_protect_run(checkpoint_id=first.json()["checkpoint"]["id"], worker="w:1")
    again = owner.client.post(checkpoints_url(owner), {"checkpoint": {"plan_id": plan.id}}, format="json")
    assert again.status_code == 200


def test_the_database_refuses_a_second_protecting_checkpoint_of_a_plan(db, fs_provider):
    plan = make_plan(fs_provider)
    first = create(plan)
    with pytest.raises(IntegrityError), transaction.atomic():
        Checkpoint.objects.create(project_id=OWNER_PROJECT, provider_id=FS_PROVIDER_ID, plan_id=plan.id,
                                  status="protecting")
    assert list(Checkpoint.objects.filter(plan_id=plan.id).values_list("pk", flat=True)) == [first.pk]


# --- no delete while a restore or verification reads the checkpoint --------------------------
def test_delete_during_a_running_restore_is_409_and_the_checkpoint_stays(owner, fs_provider):
    checkpoint = protect(make_plan(fs_provider))
    restore = restore_create(project_id=OWNER_PROJECT, provider_id=FS_PROVIDER_ID, checkpoint_id=checkpoint.id,
                             restore_target=str(fs_provider.paths["restore"]), enqueue=False)
    response = owner.client.delete(f"{checkpoints_url(owner)}/{checkpoint.id}")
    assert response.status_code == 409, response.content
    assert restore.id in response.json()["conflictingRequest"]["message"]
    assert Checkpoint.objects.get(pk=checkpoint.id).status == "available"
    assert bank().manifest_exists(checkpoint.id)
    # Once the restore ended, the delete goes through.
    Restore.objects.filter(pk=restore.id).update(status="success")
    assert owner.client.delete(f"{checkpoints_url(owner)}/{checkpoint.id}").status_code == 200


def test_a_restore_of_a_checkpoint_being_deleted_is_409(db, fs_provider):
    checkpoint = protect(make_plan(fs_provider))
    stale = Checkpoint.objects.get(pk=checkpoint.id)
    services.checkpoint_delete(checkpoint=checkpoint, enqueue=False)
    with pytest.raises(Conflict):
        # The hold re-reads the row under lock, whatever the caller saw before.
        services.checkpoint_hold(checkpoint_id=stale.id)


# --- the commit point --------------------------------------------------------------------------
class WorkerKilled(BaseException):
    """What a SIGKILL looks like from inside: nothing after this line runs, no except clause sees it."""


def kill_right_after_the_bank_commit(monkeypatch) -> None:
    commit = Writer.commit

    def commit_then_die(self, *args, **kwargs):
        commit(self, *args, **kwargs)
        raise WorkerKilled

    monkeypatch.setattr(Writer, "commit", commit_then_die)


def test_worker_killed_between_bank_commit_and_finish_is_finished_available_by_the_reaper(
    db, fs_provider, monkeypatch
):
    plan = make_plan(fs_provider)
    checkpoint = create(plan)
    kill_right_after_the_bank_commit(monkeypatch)
    with pytest.raises(WorkerKilled):
        flows.checkpoint_protect_run(checkpoint_id=checkpoint.id, worker="doomed:1")
    monkeypatch.undo()
    assert Checkpoint.objects.get(pk=checkpoint.id).status == "protecting" and bank().manifest_exists(checkpoint.id)
    Checkpoint.objects.filter(pk=checkpoint.id).update(heartbeat_at=timezone.now() - timedelta(hours=1))

    assert reaper.reap_dead_flows().checkpoints == [checkpoint.id]
    row = Checkpoint.objects.get(pk=checkpoint.id)
    key = f"{FS}#{fs_provider.id_of('data')}"
    assert row.status == "available" and row.resources_status == {key: "available"}
    assert row.saved_info[key]["files"] >= 1 and row.bytes_done > 0
    entry = OperationLog.objects.get(checkpoint_id=checkpoint.id, operation_type="protect")
    assert entry.status == "available" and entry.ended_at is not None
    # The reconciled checkpoint is a real one: the plan protects again incrementally from it.
    assert protect(plan).status == "available"


def test_rebuild_catalog_makes_a_failed_protect_with_a_committed_manifest_available(db, fs_provider, monkeypatch):
    checkpoint = create(make_plan(fs_provider))
    kill_right_after_the_bank_commit(monkeypatch)
    with pytest.raises(WorkerKilled):
        flows.checkpoint_protect_run(checkpoint_id=checkpoint.id, worker="doomed:1")
    monkeypatch.undo()
    # As an older reaper (or an operator) would have left it: failed, its manifest pinned in the bank.
    Checkpoint.objects.filter(pk=checkpoint.id).update(status="error", status_reason="worker died")
    OperationLog.objects.filter(checkpoint_id=checkpoint.id).update(status="error", ended_at=timezone.now())

    report = services.catalog_rebuild(provider_id=FS_PROVIDER_ID)
    assert report.reconciled == [checkpoint.id]
    row = Checkpoint.objects.get(pk=checkpoint.id)
    assert row.status == "available" and row.status_reason == ""
    assert OperationLog.objects.get(checkpoint_id=checkpoint.id).status == "available"


def test_rebuild_catalog_leaves_an_administrators_reset_to_error_alone(db, fs_provider):
    checkpoint = protect(make_plan(fs_provider))
    services.checkpoint_reset_state(checkpoint=checkpoint, state="error")
    assert services.catalog_rebuild(provider_id=FS_PROVIDER_ID).reconciled == []
    assert Checkpoint.objects.get(pk=checkpoint.id).status == "error"


# --- broker down ---------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_broker_down_on_checkpoint_create_is_503_and_leaves_error_not_protecting(owner, fs_provider, monkeypatch):
    from kombu.exceptions import OperationalError

    from protection import tasks

    def down(checkpoint_id):
        raise OperationalError("[Errno 111] Connection refused")

    monkeypatch.setattr(tasks.checkpoint_protect, "delay", down)
    plan = make_plan(fs_provider)
    response = owner.client.post(checkpoints_url(owner), {"checkpoint": {"plan_id": plan.id}}, format="json")
    assert response.status_code == 503, response.content
    assert "queue is unavailable" in response.json()["serviceUnavailable"]["message"]
    row = Checkpoint.objects.get(plan_id=plan.id)
    assert row.status == "error" and "Connection refused" in row.status_reason
    assert OperationLog.objects.get(checkpoint_id=row.id).status == "error"
    assert not Checkpoint.objects.filter(status="protecting").exists()


# --- delete: batched GC, error-deleting ------------------------------------------------------
def test_n_deletes_of_one_provider_run_one_gc(db, fs_provider, monkeypatch, django_capture_on_commit_callbacks, settings):
    settings.KARBOR_BANK_GC_GRACE_SECONDS = 0
    checkpoints = [protect(make_plan(fs_provider, name=f"p{index}")) for index in range(3)]
    stored = bank().stored_bytes()
    sent, gc_runs = [], []
    monkeypatch.setattr(bank_gc, "apply_async", lambda args, countdown: sent.append((args, countdown)))
    real_gc = Bank.gc

    def counted_gc(self, **kwargs):
        gc_runs.append(kwargs)
        return real_gc(self, **kwargs)

    monkeypatch.setattr(Bank, "gc", counted_gc)
    with django_capture_on_commit_callbacks(execute=True):
        for checkpoint in checkpoints:
            services.checkpoint_delete(checkpoint=checkpoint, enqueue=False)
            assert flows.checkpoint_delete_run(checkpoint_id=checkpoint.id, worker="w:1").status == "deleted"
    assert gc_runs == [] and sent == [((FS_PROVIDER_ID,), settings.KARBOR_BANK_GC_DELAY)]
    assert bank_gc(FS_PROVIDER_ID) == "done"
    assert len(gc_runs) == 1 and bank().stored_bytes() < stored
    assert BankGcRequest.objects.get(provider_id=FS_PROVIDER_ID).queued is False
    # A later delete asks for the next GC.
    with django_capture_on_commit_callbacks(execute=True):
        assert bank_gc_request(provider_id=FS_PROVIDER_ID) is True
    assert len(sent) == 2


def test_a_failed_delete_is_error_deleting_with_the_reason_and_can_be_deleted_again(db, fs_provider, monkeypatch):
    from providers.plugins.base import PluginError
    from providers.plugins.filesystem import FilesystemDirectoryPlugin

    checkpoint = protect(make_plan(fs_provider))

    def refuse(self, **kwargs):
        raise PluginError("the snapshot is still exported")

    monkeypatch.setattr(FilesystemDirectoryPlugin, "delete", refuse)
    services.checkpoint_delete(checkpoint=checkpoint, enqueue=False)
    failed = flows.checkpoint_delete_run(checkpoint_id=checkpoint.id, worker="w:1")
    assert failed.status == "error-deleting" and "still exported" in failed.status_reason
    assert not failed.deleted and bank().manifest_exists(checkpoint.id)
    assert OperationLog.objects.get(checkpoint_id=checkpoint.id, operation_type="delete").status == "error-deleting"
    monkeypatch.undo()
    services.checkpoint_delete(checkpoint=failed, enqueue=False)
    assert flows.checkpoint_delete_run(checkpoint_id=checkpoint.id, worker="w:2").status == "deleted"


def test_a_gc_whose_message_was_lost_is_queued_again(db, monkeypatch, django_capture_on_commit_callbacks, settings):
    sent = []
    monkeypatch.setattr(bank_gc, "apply_async", lambda args, countdown: sent.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        assert bank_gc_request(provider_id=FS_PROVIDER_ID) is True
        assert bank_gc_request(provider_id=FS_PROVIDER_ID) is False  # one is queued already
    lost = timezone.now() - timedelta(seconds=settings.KARBOR_BANK_GC_DELAY + settings.KARBOR_QUEUED_TIMEOUT + 1)
    BankGcRequest.objects.filter(provider_id=FS_PROVIDER_ID).update(queued_at=lost)
    with django_capture_on_commit_callbacks(execute=True):
        assert bank_gc_request(provider_id=FS_PROVIDER_ID) is True
    assert sent == [(FS_PROVIDER_ID,), (FS_PROVIDER_ID,)]
