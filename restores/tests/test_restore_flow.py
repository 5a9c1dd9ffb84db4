"""The restore flow over a real bank and real trees: what is written, what is refused, idempotency."""
from __future__ import annotations

import os
import shutil
import time

import pytest
from django.utils import timezone

from karbor_site.errors import InvalidInput
from protection.banks import bank_for_provider, resource_prefix
from protection.models import OperationLog
from providers.testing import OWNER_PROJECT
from restores import flows, services
from restores.models import Restore
from operations.heartbeat import FlowHeartbeat
from restores.tasks import restore_run_task
from restores.tests.kit import FS, UNICODE_NAME, snapshot, write_checkpoint

pytestmark = pytest.mark.django_db


def start(checkpoint, target=None, parameters=None) -> Restore:
    return services.restore_create(
        project_id=OWNER_PROJECT,
        provider_id=checkpoint.provider_id,
        checkpoint_id=checkpoint.id,
        restore_target=target,
        parameters=parameters or {},
    )


def run(checkpoint, target=None, parameters=None) -> Restore:
    return flows.restore_run(restore_id=start(checkpoint, target, parameters).id)


def only_reason(restore: Restore) -> str:
    (reason,) = restore.resources_reason.values()
    return reason


# --- what a restore writes -------------------------------------------------------------------
def test_restore_to_declared_target_is_byte_identical_with_modes_links_and_times(world):
    checkpoint = write_checkpoint(world, [world.app])
    restore = run(checkpoint, str(world.target / "copy"))
    assert restore.status == "success", restore.resources_reason
    restored = world.target / "copy"
    assert snapshot(restored, with_root=True) == snapshot(world.app, with_root=True)
    assert os.readlink(restored / "abs-link") == "/etc/hostname"
    assert (restored / UNICODE_NAME).read_text(encoding="utf-8") == "unicode ✓\n"
    assert os.stat(restored / "run.sh").st_mode & 0o777 == 0o755
    assert os.stat(restored / "secret.txt").st_mode & 0o777 == 0o600
    assert (restored / "empty.txt").stat().st_size == 0 and (restored / "empty-dir").is_dir()
    (detail,) = OperationLog.objects.get(restore_id=restore.id).extra_info["resources"].values()
    assert detail["path"] == str(restored) and detail["files"] == 8 and detail["symlinks"] == 3


def test_restore_into_the_declared_target_itself_leaves_its_mode_alone(world):
    world.target.chmod(0o711)
    checkpoint = write_checkpoint(world, [world.app])
    assert run(checkpoint, str(world.target)).status == "success"
    assert snapshot(world.target) == snapshot(world.app)
    assert os.stat(world.target).st_mode & 0o777 == 0o711


def test_restore_in_place_brings_back_deleted_and_changed_files(world):
    checkpoint = write_checkpoint(world, [world.app])
    before = snapshot(world.app, with_root=True)
    (world.app / "small.txt").write_text("tampered")
    (world.app / "run.sh").chmod(0o600)
    os.remove(world.app / "large.bin")
    shutil.rmtree(world.app / "sub")
    os.remove(world.app / "link-to-small")
    (world.app / "link-to-small").symlink_to("/etc/passwd")
    (world.app / "new-file.txt").write_text("created after the checkpoint")
    restore = run(checkpoint, None)
    assert restore.status == "success", restore.resources_reason
    after = snapshot(world.app, with_root=True)
    assert after.pop("new-file.txt")[0] == "file"  # a restore adds and replaces; it never deletes
    assert after == before


def test_restore_of_a_deleted_source_directory_recreates_it(world):
    checkpoint = write_checkpoint(world, [world.shared])
    shutil.rmtree(world.shared)
    assert run(checkpoint, None).status == "success"
    assert (world.shared / "shared.txt").read_text() == "shared"


def test_two_directories_go_into_subdirectories_named_after_them(world):
    checkpoint = write_checkpoint(world, [world.app, world.shared])
    restore = run(checkpoint, str(world.target / "both"))
    assert restore.status == "success", restore.resources_reason
    assert sorted(os.listdir(world.target / "both")) == ["app", "shared"]
    assert snapshot(world.target / "both" / "app") == snapshot(world.app)
    assert len(restore.resources_status) == 2 and set(restore.resources_status.values()) == {"available"}


def test_overwrite_false_refuses_before_writing_anything(world):
    checkpoint = write_checkpoint(world, [world.app])
    (world.app / "small.txt").write_text("local edit")
    os.remove(world.app / "secret.txt")
    restore = run(checkpoint, None, {FS: {"overwrite": False}})
    assert restore.status == "fail"
    assert "exists at the destination and overwrite is false" in only_reason(restore)
    assert (world.app / "small.txt").read_text() == "local edit"
    assert not (world.app / "secret.txt").exists()  # nothing was written, not even the missing file
    # Into an empty directory the same parameter restores fine.
    assert run(checkpoint, str(world.target / "fresh"), {FS: {"overwrite": "false"}}).status == "success"


def test_progress_reaches_the_totals_on_the_operation_log(world):
    checkpoint = write_checkpoint(world, [world.app])
    seen = []
    restore = start(checkpoint, str(world.target / "p"))
    flows.restore_run(restore_id=restore.id, on_progress=lambda rec: seen.append((rec.bytes_done, rec.items_done)))
    entry = OperationLog.objects.get(restore_id=restore.id)
    assert entry.status == "success" and entry.started_at and entry.ended_at and entry.error_info is None
    assert entry.bytes_done == entry.bytes_total == sum(
        (world.app / p).stat().st_size for p in ("small.txt", "large.bin", UNICODE_NAME, "sub/a.txt", "sub/deeper/b.txt",
                                                 "run.sh", "secret.txt")
    )
    assert entry.items_done == entry.items_total
    assert seen and seen[-1][0] == entry.bytes_done
    assert [b for b, _ in seen] == sorted(b for b, _ in seen)


# --- what a restore refuses --------------------------------------------------------------------
def test_item_names_with_traversal_are_refused_and_nothing_is_written(world):
    prefix = resource_prefix(FS, world.instance(world.shared).id)
    # A second, hostile checkpoint of the same directory: an item name climbing out.
    hostile = write_checkpoint(
        world, [world.shared], extra_items={f"{prefix}/../../../escaped.txt": b"pwned", f"{prefix}/ok.txt": b"ok"}
    )
    restore = run(hostile, str(world.target / "t"))
    assert restore.status == "fail"
    assert "unsafe item name '../../../escaped.txt'" in only_reason(restore)
    assert not any(world.root.rglob("escaped.txt")) and not (world.target / "t").exists()
    assert not os.path.exists(os.path.join(os.path.dirname(world.root), "escaped.txt"))


def test_item_below_a_symlink_of_the_checkpoint_is_refused(world):
    (world.shared / "jump").symlink_to(world.outside, target_is_directory=True)

    resource_id = world.instance(world.shared).id
    prefix = resource_prefix(FS, resource_id)
    hostile = write_checkpoint(world, [world.shared], extra_items={f"{prefix}/jump/planted.txt": b"pwned"})
    restore = run(hostile, str(world.target / "t"))
    assert restore.status == "fail"
    assert "'jump/planted.txt' lies below a symbolic link of the checkpoint" in only_reason(restore)
    assert os.listdir(world.outside) == []


def test_symlink_in_the_destination_pointing_out_is_never_written_through(world):
    checkpoint = write_checkpoint(world, [world.app])
    shutil.rmtree(world.app / "sub")
    (world.app / "sub").symlink_to(world.outside, target_is_directory=True)
    restore = run(checkpoint, None)
    assert restore.status == "fail"
    assert "'sub' at the destination is a symbolic link; refusing to restore through it" in only_reason(restore)
    assert os.listdir(world.outside) == []
    assert (world.app / "sub").is_symlink()


def test_in_place_through_a_symlinked_original_location_is_refused(world):
    checkpoint = write_checkpoint(world, [world.shared])
    shutil.rmtree(world.shared)
    world.shared.symlink_to(world.outside, target_is_directory=True)
    restore = run_unchecked(checkpoint)
    assert restore.status == "fail"
    assert "now leads through a symbolic link" in only_reason(restore)
    assert os.listdir(world.outside) == []


def run_unchecked(checkpoint) -> Restore:
    """A restore row made without the create-time checks (the tree changed after the request)."""
    restore = Restore.objects.create(
        project_id=OWNER_PROJECT,
        provider_id=checkpoint.provider_id,
        checkpoint_id=checkpoint.id,
        resources_status={key: "restoring" for key in checkpoint.resources_status},
    )
    OperationLog.objects.create(project_id=OWNER_PROJECT, operation_type="restore", restore_id=restore.id, status="in_progress")
    return flows.restore_run(restore_id=restore.id)


def test_forged_extra_info_cannot_redirect_a_restore_in_place(world):
    checkpoint = write_checkpoint(world, [world.shared])
    plan = checkpoint.protection_plan
    plan["resources"][0]["extra_info"] = {"path": str(world.outside)}
    checkpoint.protection_plan = plan
    checkpoint.saved_info = {}
    checkpoint.save()
    with pytest.raises(InvalidInput) as excinfo:
        start(checkpoint, None)
    assert excinfo.value.fields == {"restore_target": [
        "the checkpoint does not record the original location of shared; set restore_target to restore it elsewhere"
    ]}
    assert Restore.objects.count() == 0


def test_missing_manifest_fails_with_the_reason(world):
    checkpoint = write_checkpoint(world, [world.app])
    restore = start(checkpoint, str(world.target / "x"))
    bank_for_provider(world.provider).delete_manifest(checkpoint.id)
    restore = flows.restore_run(restore_id=restore.id)
    assert restore.status == "fail"
    assert "not found in the bank" in only_reason(restore)
    entry = OperationLog.objects.get(restore_id=restore.id)
    assert entry.status == "fail" and "not found in the bank" in entry.error_info and entry.ended_at


def test_a_plugin_bug_fails_the_resource_not_the_worker(world, monkeypatch):
    checkpoint = write_checkpoint(world, [world.app])
    from providers.plugins.filesystem import FilesystemDirectoryPlugin

    def broken(self, context):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(FilesystemDirectoryPlugin, "restore", broken)
    restore = run(checkpoint, str(world.target / "x"))
    assert restore.status == "fail" and "unexpected error: ZeroDivisionError: boom" in only_reason(restore)


# --- idempotency and guarded status changes ------------------------------------------------------
def test_redelivered_task_for_a_finished_restore_returns_quietly(world):
    checkpoint = write_checkpoint(world, [world.app])
    restore = start(checkpoint, str(world.target / "x"))
    assert restore_run_task(restore.id) == "success"
    ended = OperationLog.objects.get(restore_id=restore.id).ended_at
    shutil.rmtree(world.target / "x")
    assert restore_run_task(restore.id) == "success"
    assert not (world.target / "x").exists()  # not run again
    assert OperationLog.objects.get(restore_id=restore.id).ended_at == ended
    assert restore_run_task("00000000-0000-4000-8000-000000000000") is None


def test_a_restore_held_by_another_worker_is_left_alone(world):
    checkpoint = write_checkpoint(world, [world.app])
    restore = start(checkpoint, str(world.target / "x"))
    Restore.objects.filter(pk=restore.id).update(worker="celery@other:1", heartbeat_at=timezone.now())
    again = flows.restore_run(restore_id=restore.id, worker="celery@me:2")
    assert again.status == "in_progress" and again.worker == "celery@other:1"
    assert not (world.target / "x").exists()


def test_a_restore_failed_by_the_reaper_meanwhile_stays_failed(world, monkeypatch):
    checkpoint = write_checkpoint(world, [world.app])
    restore = start(checkpoint, str(world.target / "x"))
    from providers.plugins import fs_restore

    real = fs_restore.restore

    def slow(plugin, context):
        Restore.objects.filter(pk=restore.id).update(status="fail", resources_reason={"*": "reaped"})
        return real(plugin, context)

    monkeypatch.setattr(fs_restore, "restore", slow)
    finished = flows.restore_run(restore_id=restore.id)
    assert finished.status == "fail" and finished.resources_reason == {"*": "reaped"}


@pytest.mark.django_db(transaction=True)
def test_heartbeat_thread_refreshes_the_row_while_a_plugin_call_runs(world, settings):
    settings.KARBOR_FLOW_HEARTBEAT_INTERVAL = 0.05
    checkpoint = write_checkpoint(world, [world.app])
    restore = start(checkpoint, str(world.target / "x"))
    Restore.objects.filter(pk=restore.id).update(worker="me", heartbeat_at=timezone.now() - timezone.timedelta(hours=1))
    with FlowHeartbeat(model=Restore, pk=restore.id, status="in_progress", worker="me") as heartbeat:
        time.sleep(0.5)
    assert heartbeat.beats >= 2
    assert timezone.now() - Restore.objects.get(pk=restore.id).heartbeat_at < timezone.timedelta(seconds=5)
    # Another worker's row, or a finished one, is never touched.
    Restore.objects.filter(pk=restore.id).update(status="fail")
    with FlowHeartbeat(model=Restore, pk=restore.id, status="in_progress", worker="me") as heartbeat:
        time.sleep(0.2)
    assert heartbeat.beats == 0


@pytest.mark.django_db(transaction=True)
def test_flow_with_a_slow_plugin_call_keeps_heartbeating(world, settings, monkeypatch):
    settings.KARBOR_FLOW_HEARTBEAT_INTERVAL = 0.05
    checkpoint = write_checkpoint(world, [world.app])
    restore = start(checkpoint, str(world.target / "x"))
    from providers.plugins import fs_restore

    real = fs_restore.restore
    beats = []

    def slow(plugin, context):
        first = Restore.objects.get(pk=restore.id).heartbeat_at
        time.sleep(0.4)
        beats.append(Restore.objects.get(pk=restore.id).heartbeat_at > first)
        return real(plugin, context)

    monkeypatch.setattr(fs_restore, "restore", slow)
    assert flows.restore_run(restore_id=restore.id).status == "success"
    assert beats == [True]


def test_workers_register_the_restore_and_verify_tasks_by_their_stable_names():
    from karbor_site.celery import app

    app.loader.import_default_modules()
    assert {"karbor.restores.restore_run", "karbor.protection.verification_run"} <= set(app.tasks)
    for name in ("karbor.restores.restore_run", "karbor.protection.verification_run"):
        assert app.tasks[name].acks_late is True


def _swap_mid_restore(monkeypatch, swap) -> None:
    """Run ``swap`` from the plugin's progress callback (between items), once it returns True."""
    import dataclasses

    from providers.plugins import fs_restore

    real = fs_restore.restore

    def hooked(plugin, context):
        done = []
        own = context.on_progress

        def on_progress(progress):
            if not done and swap():
                done.append(True)
            if own:
                own(progress)

        result = real(plugin, dataclasses.replace(context, on_progress=on_progress))
        assert done, "the swap never ran"
        return result

    monkeypatch.setattr(fs_restore, "restore", hooked)


def _everything_below(path) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, n), path) for d, ds, fs in os.walk(path) for n in ds + fs)


def test_symlink_swapped_in_for_a_subdirectory_mid_restore_writes_nothing_outside(world, monkeypatch):
    checkpoint = write_checkpoint(world, [world.app])
    dest = world.target / "x"
    before = _everything_below(world.outside)

    def swap() -> bool:
        sub = dest / "sub"
        if sub.is_dir() and not sub.is_symlink():
            sub.rename(dest / "sub.moved")
            sub.symlink_to(world.outside, target_is_directory=True)
            return True
        return False

    _swap_mid_restore(monkeypatch, swap)
    restore = run(checkpoint, str(dest))
    assert _everything_below(world.outside) == before
    assert restore.status in ("success", "fail")
    if restore.status == "fail":
        assert "symlink" in only_reason(restore)


def test_symlink_swapped_in_for_the_destination_mid_restore_fails_it_with_nothing_outside(world, monkeypatch):
    checkpoint = write_checkpoint(world, [world.app])
    dest = world.target / "x"

    def swap() -> bool:
        if dest.is_dir() and not dest.is_symlink():
            dest.rename(world.target / "x.moved")
            dest.symlink_to(world.outside, target_is_directory=True)
            return True
        return False

    _swap_mid_restore(monkeypatch, swap)
    restore = run(checkpoint, str(dest))
    assert _everything_below(world.outside) == []
    # The tree went on into the directory that was opened; the root's own metadata was refused.
    assert restore.status == "fail" and "symlink" in only_reason(restore)
    assert (world.target / "x.moved" / "sub" / "a.txt").read_text() == "a" * 5000
