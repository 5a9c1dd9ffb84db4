"""Scheduled protection end to end: the unmodified karbor CLI, a real API, two solo workers, two beats.

One test waits for real minute ticks (usually the first, under a minute and a half): a crontab
trigger ``* * * * *`` made with ``karbor trigger-create``, a ``protect`` and a
``retention_protect`` (``max_backups=1``) operation made with ``karbor scheduledoperation-create``;
a second beat process runs beside the service's own. Checkpoints appear, made by the engine;
each (operation, tick) ran once although both beats sent the tick; the retention plan keeps
exactly one available checkpoint, the newest (a manual one made before is deleted); the API
shows the last result. The other test disables the workers in ``os-services``. The tick logic itself (windows, skips, re-arming, GFS) is tested with a clock the
tests control in ``test_engine.py``.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from karborclient.client import Client

from karbor_site.testing.live import BASE_DIR, MANAGE, live_service, stop_service

pytestmark = pytest.mark.slow

DIRECTORY = "Filesystem::Directory"
KARBOR = str(Path(sys.executable).with_name("karbor"))

# Runs in the service's environment (its own database): what the engine recorded.
_STATE_SCRIPT = """
import json, django
django.setup()
from protection.models import Checkpoint
from triggers.models import ScheduledOperationLog
logs = [
    {"operation": row.operation_id, "tick": row.expect_start_time.isoformat(), "state": row.state,
     "checkpoint": row.checkpoint_id, "info": row.extend_info}
    for row in ScheduledOperationLog.objects.order_by("expect_start_time", "id")
]
checkpoints = [
    {"id": row.id, "plan": row.plan_id, "status": row.status, "extra": row.extra_info,
     "created_at": row.created_at.isoformat()}
    for row in Checkpoint.all_objects.order_by("created_at")
]
print(json.dumps({"logs": logs, "checkpoints": checkpoints}))
"""


def cli(service, *args: str) -> dict[str, str]:
    """Run the karbor CLI as a user would; return its Property/Value table."""
    argv = [KARBOR, "--os-no-client-auth", "--karbor-url", service.endpoint, f"--os-auth-token={service.token}", *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    assert result.returncode == 0, f"karbor {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    rows = [[cell.strip() for cell in line.strip()[1:-1].split("|")] for line in result.stdout.splitlines() if line.startswith("|")]
    record: dict[str, str] = {}
    last = ""
    for prop, value in rows[1:]:
        if prop:
            record[prop], last = value, prop
        else:  # a wrapped cell continues on the next row
            record[last] = f"{record[last]}\n{value}"
    return record


def engine_state(service) -> dict:
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", _STATE_SCRIPT], cwd=BASE_DIR, env=service.env, capture_output=True, text=True,
        timeout=60, check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def sent_ticks(log_text: str) -> Counter:
    return Counter(re.findall(r"Sending due task (karbor-trigger-\S+@[\d-]+ [\d:]+) \(karbor\.triggers\.fire\)", log_text))


@pytest.fixture(scope="module")
def service():
    env = {"KARBOR_WORKER_CONCURRENCY": "2", "KARBOR_ENGINE_POLL_INTERVAL": "1", "KARBOR_SERVICE_REPORT_INTERVAL": "1"}
    with live_service(extra_env=env) as running:
        yield running


def test_cli_schedule_protects_each_tick_once_with_two_beats_and_retention_keeps_one(service, tmp_path):
    client = Client("1", service.endpoint, token=service.token)
    provider_id = client.providers.list()[0].id
    config, data = sorted(client.protectables.list_instances(DIRECTORY), key=lambda instance: instance.name)
    protected = client.plans.create("every-minute", provider_id, [{"id": config.id, "type": DIRECTORY, "name": config.name}], {})
    kept = client.plans.create("keep-one", provider_id, [{"id": data.id, "type": DIRECTORY, "name": data.name}], {})
    for plan in (protected, kept):
        client.plans.update(plan.id, {"status": "started"})
    manual = client.checkpoints.create(provider_id, kept.id)

    second_beat_log = tmp_path / "beat-2.log"
    with open(second_beat_log, "wb") as log:
        second_beat = subprocess.Popen(  # noqa: S603
            [sys.executable, MANAGE, "serve", "--no-api", "--no-worker"], cwd=BASE_DIR, env=service.env,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        trigger = cli(service, "trigger-create", "minutely", "time", "format=crontab,pattern=* * * * *,window=60")
        protect = cli(service, "scheduledoperation-create", "protect-it", "protect", trigger["id"],
                      f"provider_id={provider_id},plan_id={protected.id}")
        retain = cli(service, "scheduledoperation-create", "keep-one", "retention_protect", trigger["id"],
                     f"provider_id={provider_id},plan_id={kept.id},max_backups=1")
        assert json.loads(retain["operation_definition"])["max_backups"] == "1"

        # Wait for a settled tick (checkpoints available, retention applied) that both beats sent:
        # usually the first tick; a second one only when one beat loaded the entry after the other
        # had re-armed it.
        deadline = time.monotonic() + 200
        while True:
            state = engine_state(service)
            settled = Counter(row["operation"] for row in state["logs"] if row["state"] == "success")
            beat_logs = service.log(), second_beat_log.read_text(errors="replace")
            both = sent_ticks(beat_logs[0]) & sent_ticks(beat_logs[1])
            if settled[protect["id"]] and settled[retain["id"]] and both:
                break
            assert time.monotonic() < deadline, (
                f"a settled tick sent by both beats expected:\n{json.dumps(state, indent=1)}\n"
                f"{beat_logs[0][-3000:]}\n--- second beat ---\n{beat_logs[1][-2000:]}"
            )
            time.sleep(2)
    finally:
        stop_service(second_beat)

    logs = state["logs"]
    # Each (operation, tick) once (two beats sent a tick), each run made its own checkpoint, by the engine.
    assert len({(row["operation"], row["tick"]) for row in logs}) == len(logs)
    assert {row["state"] for row in logs} <= {"success", "in_progress"}, logs
    by_id = {row["id"]: row for row in state["checkpoints"]}
    made = [by_id[row["checkpoint"]] for row in logs]
    assert len({row["id"] for row in made}) == len(made)
    assert {row["extra"]["created_by"] for row in made} == {"operation-engine"}
    assert {row["extra"]["scheduled_operation_id"] for row in made} == {protect["id"], retain["id"]}
    engine_made = [row for row in state["checkpoints"] if row["extra"].get("created_by") == "operation-engine"]
    assert len(engine_made) == len(made)

    # The protect plan: an available checkpoint per settled tick, none deleted.
    protect_runs = [row for row in logs if row["operation"] == protect["id"] and row["state"] == "success"]
    assert {by_id[row["checkpoint"]]["status"] for row in protect_runs} == {"available"}
    # The retention plan (max_backups=1): of the manual checkpoint and the settled runs' ones, exactly
    # the newest is available; each run deleted the one before it, never its own.
    retain_runs = [row for row in logs if row["operation"] == retain["id"] and row["state"] == "success"]
    candidates = [manual.id, *(row["checkpoint"] for row in retain_runs)]
    assert [cid for cid in candidates if by_id[cid]["status"] == "available"] == [candidates[-1]]
    assert [row["info"]["deleted_checkpoints"] for row in retain_runs] == [[cid] for cid in candidates[:-1]]
    assert by_id[manual.id]["status"] in ("deleting", "deleted")

    # What the user sees through the client: the last result and when it runs next.
    shown = cli(service, "scheduledoperation-show", protect["id"])
    assert shown["last_result"] in ("success", "in_progress") and shown["next_run_at"] > shown["last_run_at"]
    for operation in (protect, retain):
        cli(service, "scheduledoperation-delete", operation["id"])


_SET_WORKERS_SCRIPT = """
import sys, django
django.setup()
from protection.registry import PROTECTION_BINARY, service_list, service_update
for service in service_list(binary=PROTECTION_BINARY):
    service_update(service_id=service.pk, status=sys.argv[1], disabled_reason="maintenance" if sys.argv[1] == "disabled" else None)
print(len(service_list(binary=PROTECTION_BINARY)))
"""


def set_workers(service, status: str) -> int:
    """What an operator does with ``PUT /os-services/{id}`` for every worker (the same service function)."""
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", _SET_WORKERS_SCRIPT, status], cwd=BASE_DIR, env=service.env, capture_output=True,
        text=True, timeout=60, check=True,
    )
    return int(result.stdout.strip().splitlines()[-1])


def test_disabled_workers_take_no_new_work_until_enabled(service):
    client = Client("1", service.endpoint, token=service.token)
    provider_id = client.providers.list()[0].id
    config = sorted(client.protectables.list_instances(DIRECTORY), key=lambda instance: instance.name)[0]
    plan = client.plans.create("while-disabled", provider_id, [{"id": config.id, "type": DIRECTORY, "name": config.name}], {})
    assert set_workers(service, "disabled") == 2
    time.sleep(4)  # a few heartbeats (KARBOR_SERVICE_REPORT_INTERVAL=1): both workers stopped consuming
    checkpoint = client.checkpoints.create(provider_id, plan.id)
    time.sleep(8)  # an enabled worker protects this small tree in about a second
    assert client.checkpoints.get(provider_id, checkpoint.id).status == "protecting"
    assert "stopped consuming" in service.log()
    set_workers(service, "enabled")
    deadline = time.monotonic() + 60
    while client.checkpoints.get(provider_id, checkpoint.id).status == "protecting":
        assert time.monotonic() < deadline, service.log()[-4000:]
        time.sleep(0.5)
    assert client.checkpoints.get(provider_id, checkpoint.id).status == "available"
