"""The secret key: generated atomically with mode 0600 in the embedded shape, required in the distributed one."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from karbor_site import secret_key
from karbor_site.secret_key import distributed_shape_reason, generated_secret_key, resolve_secret_key
from karbor_site.testing.live import BASE_DIR


def test_generated_key_file_is_0600_from_its_creation(tmp_path, monkeypatch):
    created_modes = []
    real_open = os.open

    def watching_open(path, flags, mode=0o777, *args, **kwargs):
        fd = real_open(path, flags, mode, *args, **kwargs)
        if flags & os.O_CREAT:
            created_modes.append(stat.S_IMODE(os.fstat(fd).st_mode))  # before any chmod could run
        return fd

    monkeypatch.setattr(secret_key.os, "open", watching_open)
    old_umask = os.umask(0)  # a permissive umask must not widen the file
    try:
        key = generated_secret_key(tmp_path / "data")
    finally:
        os.umask(old_umask)
    path = tmp_path / "data" / "secret_key"
    assert created_modes == [0o600]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == key and len(key) >= 50
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret_key"]  # no temp file left behind


def test_generated_key_is_reused_and_concurrent_starts_agree(tmp_path):
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(generated_secret_key(tmp_path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert generated_secret_key(tmp_path) == results[0] == (tmp_path / "secret_key").read_text()


def test_an_interrupted_write_never_leaves_a_partial_key(tmp_path, monkeypatch):
    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(secret_key.os, "fsync", failing_fsync)
    with pytest.raises(ImproperlyConfigured, match="KARBOR_SECRET_KEY"):
        generated_secret_key(tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("database_url", "broker_url", "distributed"),
    [
        (None, None, False),
        ("sqlite:////var/lib/karbor/karbor.sqlite3", "filesystem://", False),
        ("postgres://karbor@db/karbor", None, True),
        ("mysql://root@db/karbor", None, True),
        (None, "redis://redis:6379/0", True),
        (None, "amqp://guest:guest@rabbit:5672//", True),
    ],
)
def test_distributed_shape_is_a_networked_database_or_broker(database_url, broker_url, distributed):
    assert bool(distributed_shape_reason(database_url=database_url, broker_url=broker_url)) is distributed


def test_distributed_shape_without_a_key_is_refused_naming_the_variable(tmp_path):
    reason = distributed_shape_reason(database_url="postgres://karbor@db/karbor", broker_url=None)
    with pytest.raises(ImproperlyConfigured, match="KARBOR_SECRET_KEY must be set in the distributed shape"):
        resolve_secret_key(configured=None, data_dir=tmp_path, distributed_reason=reason, required=False)
    assert list(tmp_path.iterdir()) == []  # no per-node key was generated
    assert resolve_secret_key(configured="k" * 50, data_dir=tmp_path, distributed_reason=reason, required=False) == "k" * 50


def _start(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603
        [sys.executable, str(BASE_DIR / "manage.py"), "check"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def test_service_refuses_to_start_on_postgresql_without_a_key(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("KARBOR_")}
    env.update(KARBOR_DATA_DIR=str(tmp_path / "data"), KARBOR_DATABASE_URL="postgres://karbor@127.0.0.1:1/karbor")
    result = _start(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured: KARBOR_SECRET_KEY must be set" in result.stderr
    assert not Path(tmp_path / "data" / "secret_key").exists()
    env["KARBOR_SECRET_KEY"] = "x" * 50
    assert "KARBOR_SECRET_KEY" not in _start(env).stderr
