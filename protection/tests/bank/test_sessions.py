"""Concurrent writers, large manifests, unsafe paths, copying, memory bounds."""
from __future__ import annotations

import os
import threading
import tracemalloc

import blake3
import pytest

from protection.bank import Bank, BankError
from protection.bank.manifest import TYPE_DIR, TYPE_FILE, TYPE_SYMLINK, Item
from protection.tests.bank.conftest import PASSPHRASE, new_bank
from protection.tests.bank.helpers import make_tree, pseudo_random, snapshot


def test_two_concurrent_writers_both_commit_and_restore(backend, tmp_path):
    bank = new_bank(backend, pack_size=128 * 1024, index_every_packs=1)
    shared = pseudo_random(800_000, "shared")
    errors = []
    barrier = threading.Barrier(2)

    def write(mid: str) -> None:
        try:
            own = Bank.open(backend, PASSPHRASE, workers=2, pack_size=128 * 1024, index_every_packs=1)
            with own.writer(mid) as w:
                barrier.wait(10)
                w.add_stream("shared", [shared])
                w.add_stream("own", [pseudo_random(600_000, mid)])
                w.commit(meta={"writer": mid})
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(mid,)) for mid in ("w1", "w2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert bank.list_manifests() == ["w1", "w2"]
    for mid in ("w1", "w2"):
        assert bank.read_manifest(mid).meta == {"writer": mid}
        assert b"".join(bank.open_item(mid, "shared")) == shared
        assert b"".join(bank.open_item(mid, "own")) == pseudo_random(600_000, mid)
    assert bank.check(read_data=True).ok
    # Both may have stored "shared" at the same time; GC removes the duplicate copy.
    bank.gc(grace_seconds=0, clock_skew=0)
    assert bank.check(read_data=True).ok
    assert b"".join(bank.open_item("w2", "shared")) == shared


def test_large_manifest_is_chunked_and_streams(local_backend):
    bank = new_bank(local_backend)
    count = 30_000
    with bank.writer("many") as w:
        for n in range(count):
            w._finish_item(Item(path=f"dir{n // 1000:03d}/entry-{n:06d}", type=TYPE_DIR, mode=0o755,
                                mtime_ns=n), _Silent())
        manifest = w.commit()
    assert len(manifest.tree_chunks) > 1
    assert os.path.getsize(os.path.join(local_backend.root, "manifests", "many")) < 20_000
    seen = 0
    for seen, item in enumerate(manifest.items(), 1):
        pass
    assert seen == count and item.path == f"dir029/entry-{count - 1:06d}"
    # The unchanged item list of a second checkpoint deduplicates almost entirely.
    with bank.writer("many-again") as w:
        for n in range(count):
            w._finish_item(Item(path=f"dir{n // 1000:03d}/entry-{n:06d}", type=TYPE_DIR, mode=0o755,
                                mtime_ns=n + (1 if n == count // 2 else 0)), _Silent())
        again = w.commit()
    assert again.stats.new_bytes < manifest.stats.new_bytes / 4


class _Silent:
    bytes_done = 0
    items_done = 0

    def report(self) -> None:
        pass


@pytest.mark.parametrize("evil", [
    [Item(path="../escape.txt", type=TYPE_FILE)],
    [Item(path="/etc/escape.txt", type=TYPE_FILE)],
    [Item(path="a/../../escape.txt", type=TYPE_FILE)],
    [Item(path="link", type=TYPE_SYMLINK, target=".."), Item(path="link/escape.txt", type=TYPE_FILE)],
])
def test_restore_refuses_paths_escaping_the_destination(local_backend, tmp_path, evil):
    bank = new_bank(local_backend)
    with bank.writer("evil") as w:
        for item in evil:
            w._finish_item(item, _Silent())
        w.commit()
    dest = tmp_path / "restore" / "inner"
    with pytest.raises(BankError, match="refusing"):
        bank.restore_tree("evil", str(dest))
    assert not (tmp_path / "restore" / "escape.txt").exists()
    assert not (tmp_path / "escape.txt").exists()


def test_restore_prefix_and_progress(local_backend, tmp_path):
    src = str(tmp_path / "src")
    make_tree(src, big_mib=1)
    bank = new_bank(local_backend)
    with bank.writer("m") as w:
        w.add_tree(src, prefix="volumes/data")
        w.add_stream("dump.sql", [b"create table t;\n"])
        w.commit()
    progress = []
    dest = str(tmp_path / "dest")
    bank.restore_tree("m", dest, prefix="volumes/data", on_progress=progress.append)
    assert snapshot(dest) == snapshot(src)
    assert progress[-1].bytes_done == sum(
        os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(src) for f in fs
        if not os.path.islink(os.path.join(r, f)))


def _stream(total: int, block: int = 1 << 20):
    for n in range(total // block):
        yield blake3.blake3(n.to_bytes(8, "little")).digest(length=block)


def _peak_traced(bank: Bank, mid: str, total: int) -> int:
    tracemalloc.start()
    try:
        with bank.writer(mid) as w:
            w.add_stream("big", _stream(total))
            w.commit()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_writer_memory_does_not_grow_with_data(local_backend):
    bank = new_bank(local_backend, pack_size=4 * 1024 * 1024)
    small = _peak_traced(bank, "small", 16 * 1024 * 1024)
    large = _peak_traced(bank, "large", 96 * 1024 * 1024)
    assert large < 48 * 1024 * 1024, f"peak {large / 2**20:.1f} MiB for 96 MiB of data"
    assert large < small * 1.5 + 4 * 1024 * 1024, (small, large)


def test_add_reused_stores_an_unchanged_stream_without_reading_it(local_backend):
    bank = new_bank(local_backend)
    data = pseudo_random(3 * 1024 * 1024, seed="reused")
    with bank.writer("first") as w:
        w.add_stream("res/obj", [data], meta={"etag": "a"})
        w.commit()
    with bank.writer("second", parent_id="first") as w:
        (previous,) = list(w.parent_items("res"))
        assert previous.meta == {"etag": "a"} and not list(w.parent_items("other"))
        reused = w.add_reused("res/obj-again", previous, meta={"etag": "a", "note": "reused"})
        assert reused is not None and w.stats.new_bytes == 0 and w.stats.bytes_reused == len(data)
        second = w.commit()
    assert b"".join(bank.open_item("second", "res/obj-again")) == data
    (item,) = [i for i in second.items() if i.path == "res/obj-again"]
    assert item.size == len(data) and item.meta["note"] == "reused"
    assert bank.check(read_data=True).ok


def test_add_reused_refuses_chunks_the_bank_no_longer_holds(local_backend):
    bank = new_bank(local_backend)
    gone = Item(path="x", type="stream", chunks=[(b"\x01" * 32, 10)])
    with bank.writer("only") as w:
        assert w.add_reused("x", gone) is None
        assert list(w.parent_items("x")) == []
        w.commit()
    assert [i.path for i in bank.read_manifest("only").items()] == []


def test_a_long_lived_bank_dedups_against_other_writers_and_not_against_tombstones(local_backend):
    """A service worker keeps its Bank open across tasks: each writer must still see what other
    processes stored since, and stop deduplicating against what a GC tombstoned."""
    worker_bank = new_bank(local_backend)
    other_process = Bank.open(local_backend, PASSPHRASE, workers=2)
    shared = pseudo_random(600_000, "shared-by-two-processes")
    with worker_bank.writer("first") as w:
        w.add_stream("own", [pseudo_random(200_000, "own")])
        w.commit()
    with other_process.writer("elsewhere") as w:
        w.add_stream("x", [shared])
        w.commit()

    with worker_bank.writer("dedup") as w:
        w.add_stream("x", [shared])
        deduplicated = w.commit()
    assert deduplicated.stats.new_bytes < 5000, "the other process's chunks were stored again"

    for mid in ("elsewhere", "dedup"):
        other_process.delete_manifest(mid)
    lease = other_process.take_lease("reader")  # keeps the GC at tombstoning
    try:
        assert other_process.gc(grace_seconds=0, clock_skew=0).tombstoned_rows > 0
    finally:
        lease.release()
    with worker_bank.writer("after-gc") as w:
        w.add_stream("x", [shared])
        after = w.commit()
    assert after.stats.new_bytes >= len(shared), "deduplicated against chunks the GC is removing"
    assert b"".join(worker_bank.open_item("after-gc", "x")) == shared
