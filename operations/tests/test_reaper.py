"""The dead-worker reaper and its system-owned beat entry."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from operations import reaper
from protection import services
from protection.models import Checkpoint, OperationLog, Verification
from protection.tests.flowkit import make_plan
from providers.testing import FS_PROVIDER_ID, OWNER_PROJECT
from providers import testing as provider_testing
from restores.models import Restore

# The shared fixtures (a Filesystem provider over tmp dirs).
fs_provider = provider_testing.fs_provider
provider_dir = provider_testing.provider_dir


def stale(seconds: int = 600):
    return timezone.now() - timedelta(seconds=seconds)


@pytest.fixture
def protecting(db, fs_provider):
    return services.checkpoint_create(
        project_id=OWNER_PROJECT, provider_id=FS_PROVIDER_ID, plan_id=make_plan(fs_provider).id, enqueue=False
    )


def test_stale_protecting_checkpoint_becomes_error_naming_the_worker(protecting, settings):
    settings.KARBOR_SERVICE_DOWN_TIME = 60
    Checkpoint.objects.filter(pk=protecting.pk).update(
        worker="karbor-worker-1@node:4242", heartbeat_at=stale(), resources_status={"Filesystem::Directory#x": "protecting"}
    )
    report = reaper.reap_dead_flows()
    assert report.checkpoints == [protecting.pk]
    row = Checkpoint.objects.get(pk=protecting.pk)
    assert row.status == "error" and "karbor-worker-1@node:4242" in row.status_reason
    assert row.resources_status == {"Filesystem::Directory#x": "error"}
    assert "karbor-worker-1@node:4242" in row.resources_reason["Filesystem::Directory#x"]
    log = OperationLog.objects.get(checkpoint_id=protecting.pk)
    assert log.status == "error" and log.ended_at is not None and "stopped heartbeating" in log.error_info
    assert not reaper.reap_dead_flows()


def test_fresh_heartbeat_and_finished_rows_are_left_alone(protecting):
    Checkpoint.objects.filter(pk=protecting.pk).update(worker="w:1", heartbeat_at=timezone.now())
    assert not reaper.reap_dead_flows()
    Checkpoint.objects.filter(pk=protecting.pk).update(status="available", heartbeat_at=stale())
    assert not reaper.reap_dead_flows()


def test_queued_task_waits_for_the_queued_timeout_then_fails_from_created_at(protecting, settings):
    settings.KARBOR_SERVICE_DOWN_TIME = 60
    settings.KARBOR_QUEUED_TIMEOUT = 3600
    Checkpoint.objects.filter(pk=protecting.pk).update(created_at=stale(600))
    assert not reaper.reap_dead_flows()  # just waiting behind other work
    Checkpoint.objects.filter(pk=protecting.pk).update(created_at=stale(4000))
    assert reaper.reap_dead_flows().checkpoints == [protecting.pk]
    assert "No worker picked up" in Checkpoint.objects.get(pk=protecting.pk).status_reason


def test_stale_deleting_checkpoint_becomes_error_deleting(protecting):
    Checkpoint.objects.filter(pk=protecting.pk).update(status="deleting", worker="w:2", heartbeat_at=stale())
    reaper.reap_dead_flows()
    assert Checkpoint.objects.get(pk=protecting.pk).status == "error-deleting"


def test_stale_restore_and_verification_fail_with_reason(db):
    restore = Restore.objects.create(
        project_id=OWNER_PROJECT, provider_id=FS_PROVIDER_ID, checkpoint_id="c", worker="w:3", heartbeat_at=stale(),
        resources_status={"Filesystem::Directory#x": "restoring"},
    )
    restore_log = OperationLog.objects.create(project_id=OWNER_PROJECT, operation_type="restore", restore_id=restore.pk,
                                              status="in_progress", started_at=stale())
    verification = Verification.objects.create(project_id=OWNER_PROJECT, provider_id=FS_PROVIDER_ID, checkpoint_id="c",
                                               worker="w:4", heartbeat_at=stale())
    verify_log = OperationLog.objects.create(id=verification.pk, project_id=OWNER_PROJECT, operation_type="verify",
                                             checkpoint_id="c",
                                             status="in_progress", extra_info={"verification_id": verification.pk})
    report = reaper.reap_dead_flows()
    assert report.restores == [restore.pk] and report.verifications == [verification.pk]
    restore.refresh_from_db()
    assert restore.status == "fail" and restore.resources_status == {"Filesystem::Directory#x": "error"}
    assert "w:3" in restore.resources_reason["Filesystem::Directory#x"]
    verification.refresh_from_db()
    assert verification.status == "fail" and "w:4" in verification.resources_reason["*"]
    restore_log.refresh_from_db()
    verify_log.refresh_from_db()
    assert (restore_log.status, verify_log.status) == ("fail", "fail")


def test_reap_task_runs_the_reaper(protecting):
    from protection.tasks import reap_dead_flows

    Checkpoint.objects.filter(pk=protecting.pk).update(worker="w:1", heartbeat_at=stale())
    assert reap_dead_flows() == {"checkpoints": [protecting.pk], "restores": [], "verifications": []}


def test_schedule_entry_is_idempotent_and_expires(db, settings):
    from django_celery_beat.models import PeriodicTask

    settings.KARBOR_REAPER_INTERVAL = 15
    first = reaper.reaper_schedule_ensure()
    second = reaper.reaper_schedule_ensure()
    assert first.pk == second.pk and PeriodicTask.objects.filter(name=reaper.REAPER_PERIODIC_TASK).count() == 1
    assert (second.task, second.interval.every, second.expire_seconds) == ("karbor.protection.reap_dead_flows", 15, 15)
    PeriodicTask.objects.filter(pk=first.pk).update(enabled=False)
    assert reaper.reaper_schedule_ensure(interval=20).enabled
    assert PeriodicTask.objects.get(pk=first.pk).interval.every == 20


def test_worker_ready_signal_reaps(protecting):
    from karbor_site import celery as celery_module

    Checkpoint.objects.filter(pk=protecting.pk).update(worker="w:1", heartbeat_at=stale())
    celery_module._reap_at_start()
    assert Checkpoint.objects.get(pk=protecting.pk).status == "error"
