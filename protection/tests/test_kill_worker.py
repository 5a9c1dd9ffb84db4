"""End to end: SIGKILL a real Celery worker in the middle of a protect.

The promise under test: a worker that dies leaves its checkpoint in ``error`` with a reason
(found by the reaper, which celery beat runs through the DatabaseScheduler entry the system
installs), never stuck in ``protecting``; a new protect of the same plan then succeeds and the
bank still passes ``bank_check --read-data``.

The worker, beat and helper scripts are real processes sharing a database of the run's kind
(a SQLite file, or a throw-away PostgreSQL database) and the embedded ``filesystem://`` broker
under their own data dir.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dj_database_url
import pytest

from karbor_site.testing.live import BASE_DIR, _database_for, free_port, kill_session, service_env
from providers.testing import provider_document, write_provider_file

pytestmark = pytest.mark.slow

PROVIDER_ID = "c0ffee00-0000-4000-8000-00000000dead"
PROJECT_ID = "e486a2f49695423ca9c47e589b948108"
DOWN_TIME = 5

_SETUP = """
import io, sys, django
django.setup()
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
from plans.services import plan_create
from providers.registry import get_registry
plugin = get_registry().get(sys.argv[1]).plugins["Filesystem::Directory"]
instance = plugin.list_instances(project_id=sys.argv[2])[0]
plan = plan_create(project_id=sys.argv[2], provider_id=sys.argv[1], name="big",
                   resources=[{"id": instance.id, "type": instance.type, "name": instance.name}], parameters={})
print(plan.id)
"""

_PROTECT = """
import sys, django
django.setup()
from protection.services import checkpoint_create
from plans.models import Plan
plan = Plan.objects.get(pk=sys.argv[1])
print(checkpoint_create(project_id=plan.project_id, provider_id=plan.provider_id, plan_id=plan.id).id)
"""


def _python(script: str, *args: str, env: dict[str, str]) -> str:
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", script, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return result.stdout.strip().splitlines()[-1]


class Database:
    """Reads the shared database directly (no Django in the test process touches it)."""

    def __init__(self, env: dict[str, str]) -> None:
        url = env.get("KARBOR_DATABASE_URL") or f"sqlite:///{Path(env['KARBOR_DATA_DIR']) / 'karbor.sqlite3'}"
        self.config = dj_database_url.parse(url)

    def checkpoint(self, checkpoint_id: str) -> dict:
        sql = "SELECT status, bytes_done, status_reason, worker FROM checkpoints WHERE id = {}"
        if "sqlite" in self.config["ENGINE"]:
            import sqlite3

            with sqlite3.connect(self.config["NAME"], timeout=30) as conn:
                row = conn.execute(sql.format("?"), (checkpoint_id,)).fetchone()
        else:
            import psycopg2

            conn = psycopg2.connect(
                dbname=self.config["NAME"], user=self.config.get("USER") or None,
                password=self.config.get("PASSWORD") or None, host=self.config.get("HOST") or None,
                port=self.config.get("PORT") or None,
            )
            try:
                with conn.cursor() as cursor:
                    cursor.execute(sql.format("%s"), (checkpoint_id,))
                    row = cursor.fetchone()
            finally:
                conn.close()
        if row is None:
            return {}
        return dict(zip(("status", "bytes_done", "status_reason", "worker"), row))

    def wait_for(self, checkpoint_id: str, predicate, *, timeout: float, what: str, logs=()) -> dict:
        deadline = time.monotonic() + timeout
        row: dict = {}
        while time.monotonic() < deadline:
            row = self.checkpoint(checkpoint_id)
            if row and predicate(row):
                return row
            time.sleep(0.05)
        tails = "\n".join(f"--- {path.name} ---\n{path.read_text(errors='replace')[-3000:]}" for path in logs if path.exists())
        pytest.fail(f"timed out waiting for {what}; last row {row}\n{tails}")


def _start(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen(  # noqa: S603
            argv, cwd=BASE_DIR, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _worker(name: str, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    return _start(
        [sys.executable, "-m", "celery", "-A", "karbor_site", "worker", "--loglevel", "INFO", "--concurrency", "1",
         "--hostname", f"{name}@%h"],
        env, log_path,
    )


def _make_tree(root: Path, *, files: int, size: int) -> None:
    for index in range(files):
        directory = root / f"d{index % 8}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{index}.bin").write_bytes(os.urandom(size))


def slow_protect_env(tmp_path: Path, *, name: str, files: int, size: int, **settings: str) -> dict[str, str]:
    """The environment of processes sharing a fresh data dir and a provider over a tree of ``files``
    random files whose protect is slowed down by ``SlowDirectoryPlugin`` (so a test can act mid-protect)."""
    data_dir, source = tmp_path / "data", tmp_path / "source"
    data_dir.mkdir()
    _make_tree(source, files=files, size=size)
    providers_dir = tmp_path / "providers.d"
    document = provider_document(provider_id=PROVIDER_ID, name=name, bank_path=tmp_path / "bank",
                                 sources=[{"name": "big", "path": str(source), "projects": ["*"]}])
    # The real directory plugin, sleeping on each progress report.
    document["plugins"]["Filesystem::Directory"]["plugin"] = "protection.tests.flowkit.SlowDirectoryPlugin"
    write_provider_file(providers_dir, document)
    env = service_env(data_dir, free_port())
    env.update(KARBOR_PROVIDER_CONFIG_DIR=str(providers_dir), KARBOR_BANK_WORKERS="1", **settings)
    env.pop("KARBOR_FS_SOURCES", None)
    return env


def test_sigkilled_worker_leaves_error_then_a_new_protect_succeeds(tmp_path):
    # 48 MiB of incompressible data, read slowly, so the kill lands mid-protect.
    env = slow_protect_env(
        tmp_path, name="Kill test", files=48, size=1024 * 1024,
        KARBOR_SERVICE_DOWN_TIME=str(DOWN_TIME),
        KARBOR_FLOW_HEARTBEAT_INTERVAL="1",
        KARBOR_REAPER_INTERVAL="1",
        KARBOR_PROGRESS_INTERVAL="1",
        KARBOR_SERVICE_REPORT_INTERVAL="1",
        KARBOR_TEST_SLOW_PROTECT_SECONDS="0.04",
    )
    logs = [tmp_path / "worker1.log", tmp_path / "worker2.log", tmp_path / "beat.log"]
    processes: list[subprocess.Popen] = []
    with _database_for(env):
        try:
            plan_id = _python(_SETUP, PROVIDER_ID, PROJECT_ID, env=env)
            db = Database(env)
            first = _worker("kill-test-1", env, logs[0])
            processes.append(first)
            checkpoint_id = _python(_PROTECT, plan_id, env=env)
            running = db.wait_for(checkpoint_id, lambda r: r["status"] == "protecting" and r["bytes_done"] > 0,
                                  timeout=60, what="the protect to make progress", logs=logs)
            assert running["worker"].startswith("kill-test-1@")
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
            killed_at = time.monotonic()

            processes.append(_start(
                [sys.executable, "-m", "celery", "-A", "karbor_site", "beat", "--loglevel", "INFO",
                 "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
                 "--schedule", str(tmp_path / "beat-schedule")],
                env, logs[2],
            ))
            processes.append(_worker("kill-test-2", env, logs[1]))
            failed = db.wait_for(checkpoint_id, lambda r: r["status"] != "protecting", timeout=DOWN_TIME + 40,
                                 what="the reaper to fail the checkpoint", logs=logs)
            assert failed["status"] == "error", failed
            assert running["worker"] in failed["status_reason"] and "stopped heartbeating" in failed["status_reason"]
            assert time.monotonic() - killed_at < DOWN_TIME + 40

            second_id = _python(_PROTECT, plan_id, env=env)
            done = db.wait_for(second_id, lambda r: r["status"] != "protecting", timeout=120,
                               what="the second protect", logs=logs)
            assert done["status"] == "available", done
            assert done["worker"].startswith("kill-test-2@")

            check = subprocess.run(  # noqa: S603
                [sys.executable, str(BASE_DIR / "manage.py"), "bank_check", "--read-data"],
                cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=300, check=False,
            )
            assert check.returncode == 0, f"{check.stdout}\n{check.stderr}"
            assert "ok; 1 checkpoints" in check.stdout
        finally:
            for process in processes:
                kill_session(process.pid)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
