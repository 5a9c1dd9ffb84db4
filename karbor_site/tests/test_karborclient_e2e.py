"""End to end through the unmodified python-karborclient against the running service.

A real API, a real Celery worker and beat (``manage.py serve``, the last step of
``make run``), the embedded broker and a local bank: plan of a directory → checkpoint →
``available`` → restore to a declared target → ``success`` → the restored tree is
byte-identical to the source, with modes and symlinks; then a verification succeeds.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from karborclient.client import Client

from karbor_site.testing.live import live_service

pytestmark = pytest.mark.slow

DIRECTORY = "Filesystem::Directory"


def fill_tree(root: Path) -> None:
    """Nested directories, a multi-chunk file, an empty file, a symlink, a unicode name, modes."""
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / "nested" / "deeper" / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (root / "empty.txt").write_bytes(b"")
    (root / "nested" / "naïve café.txt").write_text("unicode names survive\n")
    script = root / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o750)
    (root / "link-to-rows").symlink_to("rows.csv")


def snapshot(root: Path) -> dict[str, tuple]:
    """What a user compares: every entry's relative path, kind, mode and content digest."""
    found: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                found[rel] = ("dir", st.st_mode & 0o7777)
            else:
                found[rel] = ("file", st.st_mode & 0o7777, hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def wait_for(fetch, done: set[str], *, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while True:
        current = fetch()
        if current.status in done:
            return current
        if time.monotonic() > deadline:
            raise AssertionError(f"still {current.status!r} after {timeout:.0f}s: {current}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def service():
    with live_service() as running:
        yield running


def test_protect_then_restore_to_a_new_target_is_byte_identical(service):
    client = Client("1", service.endpoint, token=service.token)
    source = service.sources_dir / "app-data"
    fill_tree(source)
    expected = snapshot(source)

    provider = next(p for p in client.providers.list() if DIRECTORY in p.extended_info_schema["options_schema"])
    data = next(i for i in client.protectables.list_instances(DIRECTORY) if i.name.endswith("app-data"))
    plan = client.plans.create("e2e", provider.id, [{"id": data.id, "type": DIRECTORY, "name": data.name}], {})

    created = client.checkpoints.create(provider.id, plan.id, {"reason": "e2e"})
    assert created.status == "protecting"
    checkpoint = wait_for(lambda: client.checkpoints.get(provider.id, created.id), {"available", "error"})
    assert checkpoint.status == "available", checkpoint
    assert json.loads(checkpoint.extra_info).get("reason") == "e2e"
    listed = [c.id for c in client.checkpoints.list(provider.id)]
    assert created.id in listed

    target = service.data_dir.parent / "restore" / "app-data-copy"
    restore = client.restores.create(provider.id, created.id, str(target), {}, None)
    restore = wait_for(lambda: client.restores.get(restore.id), {"success", "fail"})
    assert restore.status == "success", restore
    assert snapshot(target) == expected

    verification = client.verifications.create(provider.id, created.id, {})
    verification = wait_for(lambda: client.verifications.get(verification.id), {"success", "fail"})
    assert verification.status == "success", verification
