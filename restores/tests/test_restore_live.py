"""Restores and verifications through the unmodified python-karborclient and karbor CLI, against the
running service (API + Celery worker + beat): in place, refused targets as typed client errors, and
verification, as a user drives them.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from karborclient.client import Client
from karborclient.common.apiclient import exceptions as client_errors

from karbor_site.testing.live import live_service

pytestmark = pytest.mark.slow

DIRECTORY = "Filesystem::Directory"
KARBOR = str(Path(sys.executable).with_name("karbor"))


def wait_for(fetch, done: set[str], timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while True:
        current = fetch()
        if current.status in done:
            return current
        assert time.monotonic() < deadline, f"still {current.status!r} after {timeout:.0f}s: {current}"
        time.sleep(0.3)


def cli(service, *args: str) -> str:
    argv = [KARBOR, "--os-no-client-auth", "--karbor-url", service.endpoint, f"--os-auth-token={service.token}", *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    assert result.returncode == 0, f"karbor {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_restore_in_place_refused_targets_and_verification_through_karborclient():
    with live_service() as service:
        client = Client("1", service.endpoint, token=service.token)
        source = service.sources_dir / "app-config"
        (source / "nested").mkdir()
        (source / "nested" / "keep.txt").write_text("keep me\n")
        provider = next(p for p in client.providers.list() if DIRECTORY in p.extended_info_schema["restore_schema"])
        assert provider.extended_info_schema["restore_schema"][DIRECTORY]["properties"]["overwrite"]["default"] is True
        instance = next(i for i in client.protectables.list_instances(DIRECTORY) if i.name.endswith("app-config"))
        plan = client.plans.create("live restore", provider.id, [{"id": instance.id, "type": DIRECTORY, "name": instance.name}], {})
        checkpoint = client.checkpoints.create(provider.id, plan.id)
        checkpoint = wait_for(lambda: client.checkpoints.get(provider.id, checkpoint.id), {"available", "error"})
        assert checkpoint.status == "available", checkpoint

        (source / "app.ini").write_text("broken\n")
        (source / "nested" / "keep.txt").unlink()
        restore = client.restores.create(provider.id, checkpoint.id, None, {}, restore_auth=None)
        assert restore.status == "in_progress" and restore.restore_target is None
        restore = wait_for(lambda: client.restores.get(restore.id), {"success", "fail"})
        assert restore.status == "success", restore
        assert restore.resources_status == {f"{DIRECTORY}#{instance.id}": "available"}
        assert (source / "app.ini").read_text() == "[app]\nname = demo\n"
        assert (source / "nested" / "keep.txt").read_text() == "keep me\n"

        with pytest.raises(client_errors.BadRequest) as refused:
            client.restores.create(provider.id, checkpoint.id, "/etc", {}, restore_auth=None)
        assert "restore_target" in str(refused.value)
        with pytest.raises(client_errors.BadRequest) as bad_parameter:
            client.restores.create(provider.id, checkpoint.id, None, {DIRECTORY: {"overwrite": "maybe"}}, None)
        assert "overwrite" in str(bad_parameter.value)
        with pytest.raises(client_errors.NotFound):
            client.restores.create(provider.id, "00000000-0000-4000-8000-000000000000", None, {}, None)

        # The CLI sends restore_auth with a target (it insists on a username and password).
        target = service.data_dir.parent / "restore" / "copy"
        out = cli(
            service, "restore-create", provider.id, checkpoint.id, "--restore_target", str(target),
            "--restore_username", "admin", "--restore_password", "secret",
        )
        assert "in_progress" in out and "secret" not in out
        deadline = time.monotonic() + 120
        while len(client.restores.list(search_opts={"status": "success"})) < 2:
            assert time.monotonic() < deadline, client.restores.list()
            time.sleep(0.3)
        assert (target / "nested" / "keep.txt").read_text() == "keep me\n"
        assert len(client.restores.list()) == 2

        verification = client.verifications.create(provider.id, checkpoint.id, {})
        verification = wait_for(lambda: client.verifications.get(verification.id), {"success", "fail"})
        assert verification.status == "success", verification
        assert "success" in cli(service, "verification-list")
