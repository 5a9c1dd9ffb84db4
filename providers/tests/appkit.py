"""Test kit for the server-backed plugins (Redis, S3): a provider file over a tmp bank, and the
checkpoint → restore → verify cycle run in-process through the real services and flows.
"""
from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from karbor_site.testing.servers import free_port, port_open, running_in_ci, stop_process
from plans.services import plan_create
from protection import flows, services
from protection.banks import bank_for_provider, forget_banks
from protection.models import Checkpoint
from protection.verifications import verification_create, verification_run
from providers import registry
from providers.registry import get_registry
from providers.testing import OWNER_PROJECT, write_provider_file
from restores.flows import restore_run
from restores.services import restore_create

PROVIDER_ID = "a7a1c0de-0000-4000-8000-0000000a9900"


def write_provider(provider_dir: Path, bank: Path, plugins: dict[str, Any]) -> None:
    """(Re)write the one test provider file and drop cached registry and banks."""
    write_provider_file(
        provider_dir,
        {"id": PROVIDER_ID, "name": "App data provider", "description": "test", "enabled": True,
         "bank": {"type": "local", "path": str(bank)}, "plugins": plugins},
    )
    forget_banks()
    registry.clear()


def plugin(resource_type: str):
    return get_registry().get(PROVIDER_ID).plugins[resource_type]


def make_plan(resource_type: str, instance_ids: list[str], *, project_id: str = OWNER_PROJECT, parameters=None):
    return plan_create(
        project_id=project_id,
        provider_id=PROVIDER_ID,
        name="app data",
        resources=[{"id": rid, "type": resource_type, "name": rid[:8]} for rid in instance_ids],
        parameters=parameters or {},
    )


def protect(plan, *, project_id: str = OWNER_PROJECT) -> Checkpoint:
    checkpoint = services.checkpoint_create(project_id=project_id, provider_id=PROVIDER_ID, plan_id=plan.id, enqueue=False)
    return flows.checkpoint_protect_run(checkpoint_id=checkpoint.id, worker="test-worker:1")


def restore(checkpoint: Checkpoint, parameters: dict | None = None, *, project_id: str = OWNER_PROJECT):
    created = restore_create(project_id=project_id, provider_id=PROVIDER_ID, checkpoint_id=checkpoint.id,
                             parameters=parameters or {}, enqueue=False)
    return restore_run(restore_id=created.id)


def verify(checkpoint: Checkpoint, *, project_id: str = OWNER_PROJECT):
    created = verification_create(project_id=project_id, provider_id=PROVIDER_ID, checkpoint_id=checkpoint.id,
                                  enqueue=False)
    return verification_run(verification_id=created.id)


def bank():
    return bank_for_provider(get_registry().get(PROVIDER_ID))


def unavailable(message: str) -> None:
    """Skip locally, fail under CI=true (server tests must never pass by skipping)."""
    if running_in_ci():
        pytest.fail(f"{message} (CI=true: server tests must not be skipped)", pytrace=False)
    pytest.skip(message)


@dataclass
class RedisServer:
    """A redis-server process of our own (a password, a port nobody else uses)."""

    process: subprocess.Popen
    port: int
    password: str

    def stop(self) -> None:
        stop_process(self.process)


def start_redis_server(tmp_path: Path, password: str = "s3cret-pw") -> RedisServer:
    port = free_port()
    try:
        process = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--requirepass", password, "--save", "",
             "--appendonly", "no", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    except OSError as exc:
        unavailable(f"cannot start redis-server: {exc}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if port_open("127.0.0.1", port, timeout=0.2):
            return RedisServer(process, port, password)
        time.sleep(0.05)
    process.kill()
    unavailable("redis-server did not start within 10 s")
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def s3_server():
    """A moto S3 server process for the module (skips locally, fails under CI=true when it cannot start)."""
    from protection.tests.bank.s3server import S3ServerUnavailable, start_moto_server

    try:
        server = start_moto_server()
    except S3ServerUnavailable as exc:
        unavailable(f"S3 server unavailable: {exc}")
    yield server
    server.stop()
