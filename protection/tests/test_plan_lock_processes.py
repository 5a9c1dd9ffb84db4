"""Two processes create a checkpoint of the same plan at the same instant: exactly one wins.

Real processes on a real database of the run's kind (a SQLite file, or a throw-away PostgreSQL
database): the race the per-plan lock (plan row lock + one ``protecting`` row per plan) closes.
"""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from karbor_site.testing.live import BASE_DIR, _database_for, free_port, service_env
from protection.tests.test_kill_worker import PROJECT_ID, PROVIDER_ID, _SETUP, _python
from providers.testing import provider_document, write_provider_file

pytestmark = pytest.mark.slow

_CREATE_AT = """
import sys, time, django
django.setup()
from karbor_site.errors import Conflict
from plans.models import Plan
from protection.services import checkpoint_create
plan = Plan.objects.get(pk=sys.argv[1])
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
try:
    print("created", checkpoint_create(project_id=plan.project_id, provider_id=plan.provider_id, plan_id=plan.id,
                                       enqueue=False).id)
except Conflict as exc:
    print("conflict", exc.message)
"""

_STATUSES = """
import sys, django
django.setup()
from protection.models import Checkpoint
print(sorted(Checkpoint.objects.filter(plan_id=sys.argv[1]).values_list("status", flat=True)))
"""


def test_two_processes_protecting_one_plan_at_once_one_is_refused(tmp_path):
    data_dir, source = tmp_path / "data", tmp_path / "source"
    data_dir.mkdir()
    source.mkdir()
    (source / "file.txt").write_text("hello")
    providers_dir = tmp_path / "providers.d"
    write_provider_file(providers_dir, provider_document(
        provider_id=PROVIDER_ID, name="Race", bank_path=tmp_path / "bank",
        sources=[{"name": "src", "path": str(source), "projects": ["*"]}],
    ))
    env = service_env(data_dir, free_port())
    env.update(KARBOR_PROVIDER_CONFIG_DIR=str(providers_dir))
    env.pop("KARBOR_FS_SOURCES", None)
    with _database_for(env):
        plan_id = _python(_SETUP, PROVIDER_ID, PROJECT_ID, env=env)
        start_at = f"{time.time() + 6:.3f}"  # both processes are set up by then, and go together
        racers = [
            subprocess.Popen(  # noqa: S603
                [sys.executable, "-c", _CREATE_AT, plan_id, start_at], cwd=BASE_DIR, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for _ in range(2)
        ]
        outputs = [racer.communicate(timeout=120) for racer in racers]
        assert all(racer.returncode == 0 for racer in racers), outputs
        verdicts = sorted(out.strip().splitlines()[-1].split()[0] for out, _ in outputs)
        assert verdicts == ["conflict", "created"], outputs
        assert _python(_STATUSES, plan_id, env=env) == "['protecting']"
