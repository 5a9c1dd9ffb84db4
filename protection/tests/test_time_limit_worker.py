"""End to end: a real (prefork) Celery worker ends a protect that outlives the soft time limit.

The promise: the operation ends ``error`` with a reason naming KARBOR_TASK_SOFT_TIME_LIMIT — not
swallowed as one resource's failure, not left ``protecting`` — and the worker lives on to
protect again. (Celery's solo pool enforces no time limits; prefork, the distributed default, does.)
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from karbor_site.testing.live import BASE_DIR, _database_for, kill_session
from protection.tests.test_kill_worker import (
    _PROTECT, _SETUP, PROJECT_ID, PROVIDER_ID, Database, _python, _worker, slow_protect_env,
)

pytestmark = pytest.mark.slow
SOFT_LIMIT = 3


def test_a_protect_past_the_soft_time_limit_ends_error_with_the_reason(tmp_path):
    env = slow_protect_env(
        tmp_path, name="Time limit test", files=24, size=512 * 1024,
        KARBOR_TASK_SOFT_TIME_LIMIT=str(SOFT_LIMIT),
        KARBOR_TASK_TIME_LIMIT="120",
        KARBOR_FLOW_HEARTBEAT_INTERVAL="1",
        KARBOR_TEST_SLOW_PROTECT_SECONDS="0.5",  # ~20 s of protect: far past the limit
    )
    log_path = tmp_path / "worker.log"
    with _database_for(env):
        plan_id = _python(_SETUP, PROVIDER_ID, PROJECT_ID, env=env)
        db = Database(env)
        worker = _worker("limit-test", env, log_path)
        try:
            checkpoint_id = _python(_PROTECT, plan_id, env=env)
            ended = db.wait_for(checkpoint_id, lambda r: r["status"] != "protecting", timeout=90,
                                what="the soft time limit to end the protect", logs=[log_path])
            assert ended["status"] == "error", ended
            assert f"KARBOR_TASK_SOFT_TIME_LIMIT = {SOFT_LIMIT} s" in ended["status_reason"], ended
            assert worker.poll() is None  # the worker survived its task's time limit
            check = subprocess.run(  # noqa: S603
                [sys.executable, str(BASE_DIR / "manage.py"), "bank_check"],
                cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120, check=False,
            )
            assert check.returncode == 0 and "ok; 0 checkpoints" in check.stdout, check.stdout + check.stderr
        finally:
            kill_session(worker.pid)
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
