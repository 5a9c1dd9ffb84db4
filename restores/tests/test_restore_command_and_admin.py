"""``manage.py restore`` and the restores admin."""
from __future__ import annotations

import io
import shutil

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from protection.bank import Progress
from protection.models import OperationLog
from restores.models import Restore
from operations.progressbar import ProgressBar
from restores.tests.kit import FS, restore_body, snapshot, write_checkpoint

pytestmark = pytest.mark.django_db


def test_restore_command_to_a_target_runs_the_flow_in_process(world, capsys):
    checkpoint = write_checkpoint(world, [world.app])
    call_command("restore", checkpoint.id, "--target", str(world.target / "cli"))
    out = capsys.readouterr().out
    assert "success" in out and f"{FS}#" in out
    assert snapshot(world.target / "cli") == snapshot(world.app)
    restore = Restore.objects.get()
    assert restore.status == "success" and restore.worker.startswith("manage.py@")
    assert OperationLog.objects.get(restore_id=restore.id).status == "success"


def test_restore_command_in_place_and_failures_exit_non_zero(world, capsys):
    checkpoint = write_checkpoint(world, [world.app])
    shutil.rmtree(world.app / "sub")
    call_command("restore", checkpoint.id)
    assert (world.app / "sub" / "deeper" / "b.txt").read_text() == "b"
    with pytest.raises(CommandError, match="restore_target: .* is not inside a restore target directory"):
        call_command("restore", checkpoint.id, "--target", str(world.outside))
    with pytest.raises(CommandError, match="fail"):
        call_command("restore", checkpoint.id, "--parameters", '{"Filesystem::Directory": {"overwrite": false}}')
    assert "overwrite is false" in capsys.readouterr().out
    with pytest.raises(CommandError, match="not in the catalog"):
        call_command("restore", "00000000-0000-4000-8000-000000000000")
    with pytest.raises(CommandError, match="--parameters"):
        call_command("restore", checkpoint.id, "--parameters", "{nope")


def test_progress_bar_draws_only_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

        def write(self, text, ending="\n"):
            return super().write(text + ending)

    plain = io.StringIO()
    ProgressBar(plain, label="restoring")(Progress(512, 1024, 3, 6))
    assert plain.getvalue() == ""
    tty = Tty()
    bar = ProgressBar(tty, label="restoring")
    bar(Progress(512, 1024, 3, 6))
    bar.close()
    assert " 50.0% 512 B / 1.0 KiB, 3/6 items" in tty.getvalue()


def test_admin_lists_restores_and_restores_again(admin_client, owner, world, monkeypatch):
    from restores.tasks import restore_run_task

    monkeypatch.setattr(restore_run_task, "delay", lambda restore_id: None)
    checkpoint = write_checkpoint(world, [world.app])
    response = owner.client.post(owner.url("restores"), restore_body(checkpoint, target=str(world.target / "a")), format="json")
    first = response.json()["restore"]["id"]
    page = admin_client.get("/admin/restores/restore/", {"q": checkpoint.id})
    assert page.status_code == 200 and first.encode() in page.content
    assert admin_client.get(f"/admin/restores/restore/{first}/change/").status_code == 200
    admin_client.post("/admin/restores/restore/", {"action": "restore_again", "_selected_action": [first]})
    assert Restore.objects.filter(checkpoint_id=checkpoint.id).count() == 2
    admin_client.post("/admin/restores/restore/", {"action": "mark_failed", "_selected_action": [first]})
    failed = Restore.objects.get(pk=first)
    assert failed.status == "fail" and "marked failed by operator" in next(iter(failed.resources_reason.values()))
    assert OperationLog.objects.get(restore_id=first).status == "fail"
