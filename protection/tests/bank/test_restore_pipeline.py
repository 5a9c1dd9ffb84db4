"""The parallel restore pipeline and the reader's index cache."""
from __future__ import annotations

import os

import pytest

from protection.bank import Bank, CorruptionError, LocalBackend
from protection.bank.index import INDEX_PREFIX, pack_key
from protection.tests.bank.conftest import PASSPHRASE, new_bank
from protection.tests.bank.helpers import many_files_tree, pseudo_random, snapshot


class CountingBackend(LocalBackend):
    """A real local backend that counts the objects read, per key prefix."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.gets: dict = {}

    def get(self, key: str) -> bytes:
        prefix = key.split("/", 1)[0]
        self.gets[prefix] = self.gets.get(prefix, 0) + 1
        return super().get(key)


def test_restore_of_many_files_dirs_repeats_and_holes_is_identical(local_backend, tmp_path):
    src = str(tmp_path / "src")
    many_files_tree(src)
    bank = new_bank(local_backend, pack_size=256 * 1024)  # many packs: many batches in flight
    with bank.writer("m") as w:
        w.add_tree(src)
        w.commit()
    dest = str(tmp_path / "dest")
    report = Bank.open(local_backend, PASSPHRASE, workers=3).restore_tree("m", dest)
    assert snapshot(dest) == snapshot(src)
    assert report.files == sum(len(fs) for _, _, fs in os.walk(src)) - 3  # three symlinks
    sparse = os.stat(os.path.join(dest, "sparse.img"))
    assert sparse.st_blocks * 512 < sparse.st_size  # holes stay holes


def test_failed_restore_names_the_item_and_leaves_no_file_open(local_backend, tmp_path):
    src = str(tmp_path / "src")
    many_files_tree(src)
    with open(os.path.join(src, "victim.bin"), "wb") as f:
        f.write(pseudo_random(700_000, "victim"))
    bank = new_bank(local_backend, pack_size=128 * 1024)
    with bank.writer("m") as w:
        w.add_tree(src)
        w.commit()
    items = {i.path: i for i in bank.read_manifest("m").items()}
    lookup = bank.load_lookup()
    loc = lookup[items["victim.bin"].chunks[-1][0]]
    with open(os.path.join(local_backend.root, *pack_key(loc.pack).split("/")), "r+b") as f:
        f.seek(loc.offset + loc.length // 2)
        f.write(b"\xff" * 16)
    open_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(CorruptionError, match="victim.bin"):
        bank.restore_tree("m", str(tmp_path / "dest"))
    assert len(os.listdir("/proc/self/fd")) == open_before


def test_restore_reads_only_index_objects_it_has_not_seen(tmp_path):
    backend = CountingBackend(tmp_path / "bank")
    bank = new_bank(backend, pack_size=64 * 1024, index_every_packs=1)
    with bank.writer("first") as w:
        w.add_stream("a", [pseudo_random(600_000, "a")])
        w.commit()
    first_objects = len(list(backend.list(INDEX_PREFIX)))
    assert first_objects > 1
    backend.gets.clear()
    bank.restore_tree("first", str(tmp_path / "r1"))
    assert backend.gets["index"] == first_objects

    with bank.writer("second") as w:
        w.add_stream("b", [pseudo_random(300_000, "b")])
        w.commit()
    new_objects = len(list(backend.list(INDEX_PREFIX))) - first_objects
    backend.gets.clear()
    bank.restore_tree("second", str(tmp_path / "r2"))
    bank.restore_tree("first", str(tmp_path / "r3"))
    assert backend.gets["index"] == new_objects
    with open(os.path.join(tmp_path, "r2", "b"), "rb") as f:
        assert f.read() == pseudo_random(300_000, "b")

    bank.delete_manifest("first")
    bank.gc(grace_seconds=0)  # compacts: the objects the cache was built from are gone
    backend.gets.clear()
    bank.restore_tree("second", str(tmp_path / "r4"))
    assert backend.gets["index"] == len(list(backend.list(INDEX_PREFIX)))
    assert snapshot(str(tmp_path / "r4")) == snapshot(str(tmp_path / "r2"))


def _stream(total: int, block: int = 1 << 20):
    for n in range(total // block):
        yield pseudo_random(block, f"block {n}")


def test_restore_memory_does_not_grow_with_data(local_backend, tmp_path, monkeypatch):
    """On threads of this process, where tracemalloc sees every buffer (worker processes: test_restore_processes)."""
    import tracemalloc

    monkeypatch.setenv("BANK_RESTORE_PROCESSES", "1")
    bank = new_bank(local_backend, pack_size=4 * 1024 * 1024)
    for mid, mib in (("small", 16), ("large", 96)):
        with bank.writer(mid) as w:
            w.add_stream("big", _stream(mib * 1024 * 1024))
            w.commit()
    peaks = {}
    for mid in ("small", "large"):
        tracemalloc.start()
        try:
            bank.restore_tree(mid, str(tmp_path / mid))
            peaks[mid] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    print(f"\nrestore peak traced memory: {peaks}")
    assert os.path.getsize(tmp_path / "large" / "big") == 96 * 1024 * 1024
    assert peaks["large"] < 40 * 1024 * 1024, peaks
    assert peaks["large"] < peaks["small"] * 1.5 + 4 * 1024 * 1024, peaks
