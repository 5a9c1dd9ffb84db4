"""Garbage collection: reclaims deleted checkpoints, never what live or in-flight checkpoints need."""
from __future__ import annotations

import time

import pytest

from protection.bank import Bank, BankLockedError, IndexMismatchError
from protection.bank.index import pack_id_from_key
from protection.bank.locks import Lease, acquire_gc_lock
from protection.tests.bank.conftest import PASSPHRASE, new_bank
from protection.tests.bank.helpers import make_tree, pseudo_random, snapshot


def _pack_ids(bank: Bank) -> set:
    return {pack_id_from_key(i.key) for i in bank.backend.list("packs/")}


def _write(bank: Bank, mid: str, streams: dict) -> None:
    with bank.writer(mid) as w:
        for name, data in streams.items():
            w.add_stream(name, [data])
        w.commit()


def test_gc_reclaims_deleted_checkpoints_and_keeps_the_rest(backend, tmp_path):
    bank = new_bank(backend, pack_size=128 * 1024, index_every_packs=2)
    src = str(tmp_path / "src")
    make_tree(src, big_mib=1)
    shared = pseudo_random(400_000, "shared")
    with bank.writer("keep-tree") as w:
        w.add_tree(src)
        w.add_stream("shared", [shared])
        w.commit()
    for n in range(3):
        _write(bank, f"drop-{n}", {"shared": shared, "own": pseudo_random(600_000, f"own-{n}")})
    _write(bank, "keep-stream", {"own": pseudo_random(300_000, "keep")})
    size_before = bank.stored_bytes()
    for n in range(3):
        bank.delete_manifest(f"drop-{n}")

    report = bank.gc(grace_seconds=0, clock_skew=0)
    assert report.removed_rows > 0 and report.deleted_packs > 0
    assert bank.stored_bytes() < size_before - 3 * 500_000
    assert sorted(bank.list_manifests()) == ["keep-stream", "keep-tree"]
    assert bank.check(read_data=True).ok
    dest = str(tmp_path / "dest")
    bank.restore_tree("keep-tree", dest)
    expected = snapshot(src)
    expected.pop("shared", None)
    restored = snapshot(dest)
    assert restored.pop("shared")["size"] == len(shared)
    assert restored == expected
    assert b"".join(bank.open_item("keep-stream", "own")) == pseudo_random(300_000, "keep")
    # Index objects were merged into one.
    assert len(list(bank.backend.list("index/"))) == 1
    # A second run finds nothing more to do.
    again = bank.gc(grace_seconds=0, clock_skew=0)
    assert again.removed_rows == 0 and again.deleted_packs == 0


def test_gc_repacks_mostly_garbage_packs(local_backend):
    bank = new_bank(local_backend, pack_size=4 * 1024 * 1024)
    keep = pseudo_random(100_000, "keep")
    with bank.writer("both") as w:
        w.add_stream("keep", [keep])
        w.add_stream("drop", [pseudo_random(1_000_000, "drop")])
        w.commit()
    old_packs = _pack_ids(bank)
    _write(bank, "keeper", {"keep": keep})
    bank.delete_manifest("both")
    report = bank.gc(grace_seconds=0, clock_skew=0)
    assert report.repacked_packs >= 1 and report.new_packs >= 1
    assert not (_pack_ids(bank) & old_packs), "the mostly-garbage pack is replaced"
    assert bank.stored_bytes() < 400_000
    assert b"".join(bank.open_item("keeper", "keep")) == keep
    assert bank.check(read_data=True).ok


def test_grace_period_protects_young_garbage(local_backend):
    bank = new_bank(local_backend)
    _write(bank, "a", {"x": pseudo_random(300_000, "young")})
    bank.delete_manifest("a")
    size = bank.stored_bytes()
    report = bank.gc(grace_seconds=3600)
    assert report.deleted_packs == 0 and bank.stored_bytes() >= size - 1024


def test_in_flight_writer_chunks_are_not_collected(local_backend, tmp_path):
    bank = new_bank(local_backend, pack_size=64 * 1024, index_every_packs=1)
    fresh = pseudo_random(900_000, "in-flight")
    with bank.writer("slow") as w:
        w.add_stream("fresh", [fresh])
        w._packer.wait()
        w._write_index()
        written = _pack_ids(bank)
        assert written, "the in-flight writer has uploaded packs"
        # Another process collects while the writer still holds its lease.
        other = Bank.open(local_backend, PASSPHRASE)
        report = other.gc(grace_seconds=0, clock_skew=0)
        assert report.live_leases == 1
        assert written <= _pack_ids(bank), "GC deleted an in-flight writer's packs"
        w.commit()
    assert b"".join(bank.open_item("slow", "fresh")) == fresh
    assert bank.check(read_data=True).ok


def test_live_lease_tombstones_first_and_removes_later(local_backend):
    bank = new_bank(local_backend)
    data = pseudo_random(500_000, "tomb")
    _write(bank, "old", {"x": data})
    time.sleep(0.05)
    reader_lease = Lease(local_backend, "reader")  # a session that may still dedup against old data
    try:
        bank.delete_manifest("old")
        first = bank.gc(grace_seconds=0, clock_skew=0)
        assert first.tombstoned_rows > 0 and first.removed_rows == 0 and first.deleted_packs == 0
        # Sessions that start after the tombstone do not deduplicate against it...
        with bank.writer("new") as w:
            w.add_stream("x", [data])
            new = w.commit()
        assert new.stats.new_bytes >= len(data)
    finally:
        reader_lease.release()
    # ...and once no session predates the tombstone, it is removed; "new" survives.
    second = bank.gc(grace_seconds=0, clock_skew=0)
    assert second.removed_rows > 0 and second.deleted_packs > 0
    assert b"".join(bank.open_item("new", "x")) == data
    assert bank.check(read_data=True).ok


def test_reused_tombstoned_chunk_is_revived(local_backend):
    bank = new_bank(local_backend)
    data = pseudo_random(400_000, "revive")
    _write(bank, "old", {"x": data})
    time.sleep(0.05)
    # This writer loads the index before GC tombstones "old"'s chunks, then reuses them.
    with bank.writer("reuser") as w:
        bank.delete_manifest("old")
        report = bank.gc(grace_seconds=0, clock_skew=0)
        assert report.tombstoned_rows > 0
        w.add_stream("x", [data])
        manifest = w.commit()
    assert manifest.stats.new_bytes < 2000, "only the item list is new"
    later = bank.gc(grace_seconds=0, clock_skew=0)
    assert later.revived_rows > 0  # only the deleted checkpoint's own item list is removed
    assert b"".join(bank.open_item("reuser", "x")) == data
    assert bank.check(read_data=True).ok


def test_gc_stops_when_index_and_manifests_disagree(local_backend):
    bank = new_bank(local_backend, pack_size=64 * 1024)
    _write(bank, "live", {"x": pseudo_random(300_000, "live")})
    _write(bank, "dead", {"y": pseudo_random(300_000, "dead")})
    bank.delete_manifest("dead")
    for info in list(local_backend.list("index/")):
        local_backend.delete(info.key)
    packs = _pack_ids(bank)
    with pytest.raises(IndexMismatchError, match="without deleting anything"):
        bank.gc(grace_seconds=0, clock_skew=0)
    assert _pack_ids(bank) == packs


def test_gc_lock_is_exclusive_and_blocks_new_writers(local_backend):
    bank = new_bank(local_backend, lease_ttl=2.0)
    lock = acquire_gc_lock(local_backend)
    try:
        with pytest.raises(BankLockedError):
            bank.gc(grace_seconds=0)
        with pytest.raises(BankLockedError, match="garbage collection holds"):
            bank.writer("blocked")  # waits up to the lease ttl, then gives up
    finally:
        lock.release()
    with bank.writer("ok") as w:
        w.commit()
    assert bank.list_manifests() == ["ok"]


def _keys(backend, prefix: str) -> set:
    return {info.key for info in backend.list(prefix)}


def _bank_with_garbage(backend) -> Bank:
    bank = new_bank(backend, pack_size=128 * 1024, index_every_packs=2)
    for n in range(3):
        _write(bank, f"drop-{n}", {"own": pseudo_random(400_000, f"own-{n}")})
    _write(bank, "keep", {"own": pseudo_random(200_000, "keep")})
    for n in range(3):
        bank.delete_manifest(f"drop-{n}")
    return bank


def _intrude_while_marking(backend, monkeypatch, intrusion) -> None:
    """Run ``intrusion`` once, when GC lists the manifests (after taking its lock, before sweeping)."""
    original_list = backend.list
    done = []

    def list_then_intrude(prefix=""):
        if prefix.startswith("manifests/") and not done:
            done.append(True)
            intrusion()
        return original_list(prefix)

    monkeypatch.setattr(backend, "list", list_then_intrude)


def test_gc_deletes_nothing_when_another_gc_took_the_lock_while_it_marked(backend, monkeypatch):
    bank = _bank_with_garbage(backend)
    before = (_keys(backend, "packs/"), _keys(backend, "index/"))
    # What a second GC does when it sees this one's lock as dead (a pause past the ttl).
    intruders = []
    _intrude_while_marking(backend, monkeypatch, lambda: intruders.append(Lease(backend, "gc", name="gc")))
    try:
        with pytest.raises(BankLockedError, match="another holder took the lock"):
            bank.gc(grace_seconds=0, clock_skew=0)
    finally:
        for intruder in intruders:
            intruder.release()
    assert (_keys(backend, "packs/"), _keys(backend, "index/")) == before
    monkeypatch.undo()
    report = bank.gc(grace_seconds=0, clock_skew=0)  # with the lock really held, the same GC proceeds
    assert report.deleted_packs > 0 and bank.check(read_data=True).ok


def test_gc_deletes_nothing_when_its_lock_object_vanished(backend, monkeypatch):
    bank = _bank_with_garbage(backend)
    before = (_keys(backend, "packs/"), _keys(backend, "index/"))

    def remove_gc_locks():
        for key in _keys(backend, "locks/gc-"):
            backend.delete(key)

    _intrude_while_marking(backend, monkeypatch, remove_gc_locks)
    with pytest.raises(BankLockedError, match="no longer in the bank"):
        bank.gc(grace_seconds=0, clock_skew=0)
    assert (_keys(backend, "packs/"), _keys(backend, "index/")) == before
    assert sorted(bank.list_manifests()) == ["keep"]
