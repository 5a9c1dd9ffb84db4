"""A writer killed with SIGKILL at random points never leaves a checkpoint that looks complete."""
from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time

import pytest

from protection.bank import Bank, LocalBackend
from protection.tests.bank.conftest import PASSPHRASE, new_bank
from protection.tests.bank.helpers import pseudo_random, snapshot, text

KILLS = 24


def _write_tree(root: str) -> None:
    os.makedirs(root)
    for n in range(6):
        with open(os.path.join(root, f"blob{n}.bin"), "wb") as f:
            f.write(pseudo_random(400_000, f"crash-{n}"))
    for n in range(30):
        with open(os.path.join(root, f"note{n}.txt"), "wb") as f:
            f.write(text(3_000 + n, f"note-{n}"))


def _child(bank_dir: str, src: str, manifest_id: str, kill_after_calls: int) -> None:
    bank = Bank.open(LocalBackend(bank_dir), PASSPHRASE, workers=2, pack_size=96 * 1024, index_every_packs=1)
    calls = 0

    def on_progress(progress) -> None:
        nonlocal calls
        calls += 1
        if calls == kill_after_calls:
            os.kill(os.getpid(), signal.SIGKILL)

    with bank.writer(manifest_id) as w:
        w.add_tree(src, on_progress=on_progress)
        if kill_after_calls:
            # How many callbacks a run makes depends on thread timing; one that made fewer
            # than the chosen count dies here, just before its commit, the latest such point.
            os.kill(os.getpid(), signal.SIGKILL)
        w.commit(meta={"attempt": manifest_id})
    os._exit(0)


def _run(ctx, bank_dir: str, src: str, manifest_id: str, kill_after_calls: int = 0, kill_after_seconds: float = 0.0) -> bool:
    """Run one writer child; return True when it was killed before exiting by itself."""
    proc = ctx.Process(target=_child, args=(bank_dir, src, manifest_id, kill_after_calls))
    proc.start()
    if kill_after_seconds:
        time.sleep(kill_after_seconds)
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
    proc.join(20)
    return proc.exitcode == -signal.SIGKILL


def _assert_every_checkpoint_complete(bank: Bank, tmp_path, expected: dict) -> None:
    report = bank.check(read_data=True)
    assert report.ok, report.errors
    for mid in bank.list_manifests():
        dest = str(tmp_path / f"restore-{mid}")
        bank.restore_tree(mid, dest)
        assert snapshot(dest) == expected


def test_sigkill_at_random_points_leaves_no_partial_checkpoint(tmp_path):
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs fork")
    src, bank_dir = str(tmp_path / "src"), str(tmp_path / "bank")
    _write_tree(src)
    total = sum(os.path.getsize(os.path.join(src, n)) for n in os.listdir(src))
    new_bank(LocalBackend(bank_dir))
    calls = []  # how many progress callbacks a whole run makes (measured on a throwaway bank)
    with new_bank(LocalBackend(str(tmp_path / "probe"))).writer("probe") as w:
        w.add_tree(src, on_progress=calls.append)
        w.abort()
    ctx = multiprocessing.get_context("fork")
    rng = random.Random(1234)

    # Phase 1: killed after a random number of progress callbacks (mid-chunking, mid-upload, mid-index).
    for attempt in range(KILLS):
        assert _run(ctx, bank_dir, src, f"count-{attempt}", kill_after_calls=rng.randint(1, len(calls) - 1))
    bank = Bank.open(LocalBackend(bank_dir), PASSPHRASE)
    assert bank.list_manifests() == []
    expected = snapshot(src)
    _assert_every_checkpoint_complete(bank, tmp_path, expected)

    # The writers of phase 1 left indexed packs behind; a new protect reuses them.
    with bank.writer("after-crashes") as w:
        w.add_tree(src)
        manifest = w.commit()
    assert manifest.stats.bytes == total
    assert manifest.stats.new_bytes < total * 0.25, "the retry must deduplicate against the killed writers' packs"
    dest = str(tmp_path / "restore-final")
    bank.restore_tree("after-crashes", dest)
    assert snapshot(dest) == expected
    assert bank.check().ok

    # Phase 2: killed after random delays, which also lands in the commit itself.
    for attempt in range(6):
        _run(ctx, bank_dir, src, f"timed-{attempt}", kill_after_seconds=rng.uniform(0.0, 0.25))
    _assert_every_checkpoint_complete(bank, tmp_path, expected)

