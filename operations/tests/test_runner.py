"""The runner's promises, shown on the real kinds: soft time limit, re-delivery, retries, the registry."""
from __future__ import annotations

from celery.exceptions import SoftTimeLimitExceeded

from operations.kinds import registered_kinds
from operations.runner import TRANSIENT_ERRORS, operation_run
from protection.flows import PROTECT_KIND
from protection.models import Checkpoint, OperationLog
from protection.services import checkpoint_create
from protection.tests.flowkit import make_plan
from providers import testing as provider_testing
from providers.plugins.filesystem import FilesystemDirectoryPlugin
from providers.testing import FS_PROVIDER_ID, OWNER_PROJECT
from restores import flows as restore_flows
from restores.tests.kit import write_checkpoint
from restores.services import restore_create

fs_provider = provider_testing.fs_provider


def test_soft_time_limit_ends_the_restore_with_a_reason_and_skips_the_remaining_resources(db, world, monkeypatch, settings):
    settings.CELERY_TASK_SOFT_TIME_LIMIT = 1234
    checkpoint = write_checkpoint(world, [world.app, world.shared])
    calls = []

    def out_of_time(self, context):
        calls.append(context.resource.id)
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(FilesystemDirectoryPlugin, "restore", out_of_time)
    restore = restore_create(project_id=checkpoint.project_id, provider_id=checkpoint.provider_id,
                             checkpoint_id=checkpoint.id, restore_target=str(world.target), enqueue=False)
    finished = restore_flows.restore_run(restore_id=restore.id, worker="w:1")
    assert finished.status == "fail" and len(calls) == 1
    reasons = list(finished.resources_reason.values())
    assert reasons and all("KARBOR_TASK_SOFT_TIME_LIMIT = 1234 s" in reason for reason in reasons)
    assert "unexpected error" not in " ".join(reasons)
    entry = OperationLog.objects.get(restore_id=restore.id)
    assert entry.status == "fail" and "time limit" in entry.error_info


def test_soft_time_limit_ends_the_protect_with_a_reason_and_no_manifest(db, fs_provider, monkeypatch):
    def out_of_time(self, context):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(FilesystemDirectoryPlugin, "protect", out_of_time)
    plan = make_plan(fs_provider)
    checkpoint = checkpoint_create(project_id=OWNER_PROJECT, provider_id=FS_PROVIDER_ID, plan_id=plan.id, enqueue=False)
    row = operation_run(kind=PROTECT_KIND, row_id=checkpoint.id, worker="w:1")
    assert row.status == "error" and "KARBOR_TASK_SOFT_TIME_LIMIT" in row.status_reason
    assert set(row.resources_status.values()) == {"error"}


def test_a_redelivered_task_returns_quietly_and_changes_nothing(db, fs_provider):
    plan = make_plan(fs_provider)
    checkpoint = checkpoint_create(project_id=OWNER_PROJECT, provider_id=FS_PROVIDER_ID, plan_id=plan.id, enqueue=False)
    Checkpoint.objects.filter(pk=checkpoint.id).update(worker="other:1")  # another worker holds it
    assert PROTECT_KIND.task.run(checkpoint.id) == "protecting"
    row = Checkpoint.objects.get(pk=checkpoint.id)
    assert (row.status, row.worker) == ("protecting", "other:1")


def test_every_kind_has_a_stable_task_name_and_retries_only_transient_errors():
    names = {kind.name: kind.task_name for kind in registered_kinds()}
    assert names == {
        "checkpoint_protect": "karbor.protection.checkpoint_protect",
        "checkpoint_delete": "karbor.protection.checkpoint_delete",
        "restore": "karbor.restores.restore_run",
        "verify": "karbor.protection.verification_run",
        "checkpoint_copy": "karbor.protection.checkpoint_copy",
    }
    for kind in registered_kinds():
        assert kind.task.name == kind.task_name and kind.task.acks_late
        assert tuple(kind.task.autoretry_for) == TRANSIENT_ERRORS


def test_a_task_whose_retries_ran_out_fails_its_row_with_the_reason(db, fs_provider):
    from django.db import OperationalError

    plan = make_plan(fs_provider)
    checkpoint = checkpoint_create(project_id=OWNER_PROJECT, provider_id=FS_PROVIDER_ID, plan_id=plan.id, enqueue=False)
    PROTECT_KIND.task.on_failure(OperationalError("database is locked"), "task-id", (checkpoint.id,), {}, None)
    row = Checkpoint.objects.get(pk=checkpoint.id)
    assert row.status == "error" and "database is locked" in row.status_reason
