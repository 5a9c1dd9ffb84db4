"""Management commands (protect, bank_check, bank_gc, rebuild_catalog) and the admin actions."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from protection.models import Checkpoint, OperationLog
from protection.tests.flowkit import fill_tree, make_plan
from providers import testing as provider_testing

# The shared fixtures (a Filesystem provider over tmp dirs).
fs_provider = provider_testing.fs_provider
provider_dir = provider_testing.provider_dir


@pytest.fixture
def plan(db, fs_provider):
    (fs_provider.paths["data"] / "escape").unlink()
    fill_tree(fs_provider.paths["data"], files=6, size=40 * 1024)
    return make_plan(fs_provider)


def run(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    return code, out.getvalue(), err.getvalue()


def test_protect_command_prints_id_and_status(plan):
    code, out, _ = run("protect", plan.id, "--extra-info", "reason=test")
    checkpoint = Checkpoint.objects.get()
    assert code == 0 and checkpoint.id in out and f"checkpoint {checkpoint.id}: available" in out
    assert checkpoint.extra_info == {"reason": "test", "created_by": "manual"}


def test_protect_command_exits_non_zero_on_error(plan, fs_provider):
    import shutil

    shutil.rmtree(fs_provider.paths["data"])
    code, out, err = run("protect", plan.id)
    assert code == 1 and ": error" in out and "no longer available" in err


def test_protect_command_unknown_plan(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="could not be found"):
        call_command("protect", "00000000-0000-4000-8000-000000000000", stdout=io.StringIO())


def test_bank_check_gc_and_rebuild_catalog(plan, fs_provider):
    run("protect", plan.id)
    code, out, _ = run("bank_check", "--read-data")
    assert code == 0 and "ok; 1 checkpoints" in out
    code, out, _ = run("bank_gc", "--grace-seconds", "0", "--provider", fs_provider.provider_id)
    assert code == 0 and "1 checkpoints" in out
    Checkpoint.all_objects.all().delete()
    code, out, _ = run("rebuild_catalog")
    assert code == 0 and out.startswith("1 created")
    assert Checkpoint.objects.get().status == "available"


def test_bank_check_reports_damage(plan, fs_provider):
    run("protect", plan.id)
    packs = [p for p in (fs_provider.bank / "packs").rglob("*") if p.is_file()]
    assert packs
    data = bytearray(packs[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    packs[0].write_bytes(bytes(data))
    code, _, err = run("bank_check", "--read-data")
    assert code == 1 and err


def test_admin_protect_now_and_delete_checkpoint_actions(admin_client, plan, django_capture_on_commit_callbacks, monkeypatch):
    from protection import tasks

    sent = []
    monkeypatch.setattr(tasks.checkpoint_protect, "delay", lambda cid: sent.append(("protect", cid)))
    monkeypatch.setattr(tasks.checkpoint_delete, "delay", lambda cid: sent.append(("delete", cid)))
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/admin/plans/plan/", {"action": "protect_now", "_selected_action": [plan.pk]},
                                     follow=True)
    checkpoint = Checkpoint.objects.get()
    assert b"Protecting" in response.content and sent == [("protect", checkpoint.id)]
    response = admin_client.post("/admin/protection/checkpoint/",
                                 {"action": "delete_checkpoint", "_selected_action": [checkpoint.pk]}, follow=True)
    assert b"can not be deleted while it is protecting" in response.content
    Checkpoint.objects.filter(pk=checkpoint.pk).update(status="available")
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post("/admin/protection/checkpoint/",
                          {"action": "delete_checkpoint", "_selected_action": [checkpoint.pk]})
    assert Checkpoint.objects.get().status == "deleting" and sent[-1] == ("delete", checkpoint.id)
    assert OperationLog.objects.filter(checkpoint_id=checkpoint.id, operation_type="delete").exists()


def test_protect_command_draws_a_progress_bar_on_a_terminal(plan):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    call_command("protect", plan.id, stdout=out, stderr=io.StringIO())
    text = out.getvalue()
    assert "\rprotecting [" in text and "%" in text and "items" in text
    assert text.rstrip().endswith(": available")
