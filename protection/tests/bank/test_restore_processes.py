"""Restoring in worker processes: the same tree as the threads make, errors named, no worker left behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from protection.bank import Bank, BankError, CorruptionError, LocalBackend
from protection.bank import reader
from protection.bank.index import pack_key
from protection.tests.bank.conftest import PASSPHRASE, new_bank
from protection.tests.bank.helpers import many_files_tree, pseudo_random, snapshot

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.fixture
def protected(local_backend, tmp_path):
    src = str(tmp_path / "src")
    many_files_tree(src)
    bank = new_bank(local_backend, pack_size=512 * 1024)
    with bank.writer("m") as w:
        w.add_tree(src)
        w.commit()
    return src, local_backend


def _restore_pids(monkeypatch, tmp_path) -> str:
    """Record in a file the pid of the process that ran each thread pipeline (one per unit in a worker)."""
    log = str(tmp_path / "pids")
    original = reader._ParallelRestore.finish

    def recording(self):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        return original(self)

    monkeypatch.setattr(reader._ParallelRestore, "finish", recording)  # the forked workers inherit it
    return log


def test_worker_processes_restore_the_tree_the_threads_restore(protected, tmp_path, monkeypatch):
    src, backend = protected
    pids = _restore_pids(monkeypatch, tmp_path)
    monkeypatch.setattr(reader, "UNIT_COST", 256 * 1024)  # many units, so every worker gets some
    progress = []
    by_processes = Bank.open(backend, PASSPHRASE, workers=3).restore_tree(
        "m", str(tmp_path / "processes"), on_progress=lambda p: progress.append((p.bytes_done, p.items_done)))
    units = open(pids).read().split()
    assert len(set(units)) == 3 and str(os.getpid()) not in units

    monkeypatch.setenv("BANK_RESTORE_PROCESSES", "1")  # threads of this process, no units
    by_threads = Bank.open(backend, PASSPHRASE, workers=3).restore_tree("m", str(tmp_path / "threads"))
    assert open(pids).read().split() == units + [str(os.getpid())]
    assert snapshot(str(tmp_path / "processes")) == snapshot(src)
    assert snapshot(str(tmp_path / "threads")) == snapshot(src)
    assert (by_processes.files, by_processes.dirs, by_processes.symlinks, by_processes.bytes) == \
           (by_threads.files, by_threads.dirs, by_threads.symlinks, by_threads.bytes)
    assert by_processes.files > 480
    assert progress[-1][0] == by_processes.bytes
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)  # never goes back


def test_a_damaged_chunk_read_by_a_worker_process_names_the_file(protected, tmp_path):
    src, backend = protected
    bank = Bank.open(backend, PASSPHRASE, workers=2)
    item = next(i for i in bank.read_manifest("m").items() if i.path == "many/d5/f33.txt")
    loc = bank.load_lookup()[item.chunks[0][0]]
    with open(os.path.join(backend.root, *pack_key(loc.pack).split("/")), "r+b") as f:
        f.seek(loc.offset + loc.length // 2)
        f.write(b"\xff" * 8)
    with pytest.raises(CorruptionError, match="many/d5/f33.txt"):
        bank.restore_tree("m", str(tmp_path / "dest"))


def test_restore_workers_die_with_the_restoring_process(tmp_path):
    """A restoring process killed outright (a worker's hard time limit) leaves no worker running."""
    script = textwrap.dedent(f"""
        import multiprocessing, os, sys, time
        sys.path.insert(0, {REPO_ROOT!r})
        from protection.bank.reader import _exit_with_parent

        def worker(parent):
            _exit_with_parent(parent)
            time.sleep(120)

        child = multiprocessing.get_context("fork").Process(target=worker, args=(os.getpid(),))
        child.start()
        print(child.pid, flush=True)
        time.sleep(120)
    """)
    restoring = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)  # noqa: S603
    try:
        worker = int(restoring.stdout.readline())
        time.sleep(0.3)  # let the worker ask for its death signal
        assert _alive(worker)
        os.kill(restoring.pid, signal.SIGKILL)
        restoring.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker), "the worker outlived the process that started it"
    finally:
        restoring.kill()
        restoring.stdout.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, waiting for its reaper
    except FileNotFoundError:
        return False


_MEASURE_RESTORE = """
import resource, sys
sys.path.insert(0, sys.argv[1])
from protection.bank import Bank, LocalBackend
Bank.open(LocalBackend(sys.argv[2]), sys.argv[3], workers=2).restore_tree(sys.argv[4], sys.argv[5])
with open("/proc/self/status") as status:
    restoring = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(restoring, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _peak_rss_of_restore(bank_dir: str, manifest_id: str, dest: str) -> tuple:
    """Peak RSS in KiB of a restore in a new process, and of the largest of its workers.

    Measured inside that process: the peak of a process started from this one (pytest, far
    larger) would be floored at this one's size. A worker's figure counts what it shares with
    the restoring process it was forked from.
    """
    out = subprocess.run([sys.executable, "-c", _MEASURE_RESTORE, REPO_ROOT, bank_dir, PASSPHRASE, manifest_id, dest],
                         capture_output=True, text=True, check=True).stdout  # noqa: S603
    restoring, worker = (int(n) for n in out.split()[-2:])
    return restoring, worker


def test_worker_process_memory_does_not_grow_with_data(tmp_path):
    backend = LocalBackend(tmp_path / "bank")
    bank = new_bank(backend, pack_size=4 * 1024 * 1024)
    for mid, mib in (("small", 16), ("large", 96)):
        with bank.writer(mid) as w:
            for n in range(mib // 8):  # 8 MiB files: a unit each, spread over both workers
                w.add_stream(f"part{n}", (pseudo_random(1 << 20, f"{mid} {n} {k}") for k in range(8)))
            w.commit()
    peaks = {mid: _peak_rss_of_restore(str(tmp_path / "bank"), mid, str(tmp_path / mid)) for mid in ("small", "large")}
    print(f"\nrestore peak RSS (KiB, restoring process and largest worker): {peaks}")
    assert os.path.getsize(tmp_path / "large" / "part11") == 8 * 1024 * 1024
    (small_parent, small_worker), (large_parent, large_worker) = peaks["small"], peaks["large"]
    assert small_worker > 0 and large_worker > 0  # the workers ran
    assert large_parent < small_parent + 8 * 1024, peaks
    assert large_worker < small_worker + 12 * 1024, peaks


def test_a_worker_process_that_dies_fails_the_restore_with_a_reason(protected, tmp_path, monkeypatch):
    src, backend = protected

    def killed(self):
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would

    monkeypatch.setattr(reader._ParallelRestore, "finish", killed)  # only the forked workers call it here
    with pytest.raises(BankError, match="restore worker process died"):
        Bank.open(backend, PASSPHRASE, workers=2).restore_tree("m", str(tmp_path / "dest"))


def _restore_in_pool_worker(bank_dir: str, dest: str) -> tuple:
    import billiard

    report = Bank.open(LocalBackend(bank_dir), PASSPHRASE, workers=2).restore_tree("m", dest)
    return report.files, billiard.current_process().daemon


def test_restore_in_a_celery_prefork_pool_worker_uses_worker_processes(protected, tmp_path, monkeypatch):
    """Celery's prefork children are daemonic, and multiprocessing refuses daemonic processes children."""
    import billiard

    src, backend = protected
    pids = _restore_pids(monkeypatch, tmp_path)
    with billiard.Pool(1) as pool:
        files, daemonic = pool.apply(_restore_in_pool_worker, (backend.root, str(tmp_path / "dest")))
    assert daemonic
    assert snapshot(str(tmp_path / "dest")) == snapshot(src)
    assert len(set(open(pids).read().split())) == 2
