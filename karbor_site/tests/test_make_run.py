"""``make run`` and ``manage.py serve``: API, worker and beat as real processes, supervised together."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from karbor_site.testing.live import (
    BASE_DIR,
    cmdline,
    free_port,
    kill_session,
    live_service,
    service_env,
    session_pids,
    wait_for_http,
)

ROLES = {
    "api": "gunicorn karbor_site.wsgi",
    "worker": "celery -A karbor_site worker",
    "beat": "celery -A karbor_site beat",
}


def role_pids(session_id: int) -> dict[str, list[int]]:
    """The leader process of each role among serve's children (the leader is its group's id)."""
    found: dict[str, list[int]] = {role: [] for role in ROLES}
    for pid in session_pids(session_id):
        line = cmdline(pid)
        for role, marker in ROLES.items():
            if marker in line and os.getpgid(pid) == pid:
                found[role].append(pid)
    return found


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def get_json(url: str, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"X-Auth-Token": token})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        return response.status, json.loads(response.read())


@pytest.mark.slow
def test_make_run_starts_api_worker_and_beat_and_sigterm_stops_all_three():
    with tempfile.TemporaryDirectory(prefix="karbor-make-run-") as tmp:
        port = free_port()
        env = service_env(Path(tmp) / "data", port)
        # Exactly as a user runs it: the embedded defaults, only PORT chosen.
        for name in ("KARBOR_BIND", "KARBOR_DATABASE_URL", "KARBOR_WEB_WORKERS", "KARBOR_WORKER_CONCURRENCY", "KARBOR_FS_PROJECTS"):
            env.pop(name, None)
        # The README's "protect a directory" step: make run names the demo project for these.
        source = Path(tmp) / "www"
        source.mkdir()
        env["KARBOR_FS_SOURCES"] = str(source)
        log_path = Path(tmp) / "make-run.log"
        with open(log_path, "wb") as log:
            make = subprocess.Popen(  # noqa: S603
                ["make", "--no-print-directory", "run", f"VENV={sys.prefix}"],  # noqa: S607
                cwd=BASE_DIR, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            base = f"http://127.0.0.1:{port}"
            assert wait_for_http(f"{base}/", timeout=90, process=make) == 300
            output = log_path.read_text()
            token = re.search(r"^\s*token\s*:\s*(\S+)$", output, re.MULTILINE).group(1)
            assert f"http://127.0.0.1:{port}/v1/demo" in output
            assert f"listening on http://127.0.0.1:{port}/" in output

            wait_until(lambda: all(role_pids(make.pid).values()), 30, "API, worker and beat")
            leaders = {role: pids[0] for role, pids in role_pids(make.pid).items()}
            assert len(set(leaders.values())) == 3

            status, body = get_json(f"{base}/v1/demo/providers", token)
            assert status == 200
            assert isinstance(body["providers"], list)
            status, body = get_json(f"{base}/v1/demo/protectables/Filesystem::Directory/instances", token)
            assert status == 200
            assert [instance["name"] for instance in body["instances"]] == [str(source)]

            serve = next(pid for pid in session_pids(make.pid) if "manage.py serve" in cmdline(pid))
            os.kill(serve, signal.SIGTERM)
            assert make.wait(timeout=45) == 0, log_path.read_text()[-3000:]
            assert not [role for role, pid in leaders.items() if alive(pid)]
            assert session_pids(make.pid) == []
            assert "karbor serve: stopped." in log_path.read_text()
        finally:
            if make.poll() is None:
                make.kill()
            kill_session(make.pid)


@pytest.mark.slow
def test_serve_stops_the_others_and_fails_when_a_child_dies():
    with live_service() as service:
        wait_until(lambda: all(role_pids(service.process.pid).values()), 30, "API, worker and beat")
        leaders = {role: pids[0] for role, pids in role_pids(service.process.pid).items()}

        os.kill(leaders["worker"], signal.SIGKILL)

        assert service.process.wait(timeout=40) == 1
        assert not [role for role, pid in leaders.items() if alive(pid)]
        assert session_pids(service.process.pid) == []
        assert re.search(r"worker \(pid \d+\) exited with code -9; stopping the others", service.log())


def test_serve_refuses_to_run_nothing():
    result = subprocess.run(  # noqa: S603
        [sys.executable, str(BASE_DIR / "manage.py"), "serve", "--no-api", "--no-worker", "--no-beat"],
        cwd=BASE_DIR, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode != 0
    assert "Nothing to run" in result.stderr
