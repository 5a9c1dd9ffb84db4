"""Round-trip, streams, incremental reuse and dedup, on both backends."""
from __future__ import annotations

import io
import os
import uuid

import pytest

from protection.bank import Bank, BankError, ChunkerParams, Progress
from protection.tests.bank.conftest import FAST_KDF, PASSPHRASE, new_bank
from protection.tests.bank.helpers import make_tree, pseudo_random, snapshot


def test_tree_roundtrip_preserves_content_and_metadata(backend, tmp_path):
    src, dest = str(tmp_path / "src"), str(tmp_path / "dest")
    # Production chunk sizes. big.bin is larger than the 4 MiB maximum chunk, so it spans
    # several chunks whatever the bank's secret chunker seed (a 3 MiB file stays one chunk
    # for about 1 % of seeds).
    make_tree(src, big_mib=5)
    bank = new_bank(backend, chunker=ChunkerParams())
    progress = []
    mid = str(uuid.uuid4())
    with bank.writer(mid) as w:
        w.add_tree(src, on_progress=progress.append)
        manifest = w.commit(meta={"plan": "p1", "resources": [1, 2]})
    assert bank.list_manifests() == [mid]
    assert manifest.meta == {"plan": "p1", "resources": [1, 2]}
    big = next(i for i in manifest.items() if i.path == "big.bin")
    assert len(big.chunks) >= 2
    assert progress and isinstance(progress[-1], Progress)
    assert progress[-1].bytes_done == manifest.stats.bytes

    reopened = Bank.open(backend, PASSPHRASE)
    report = reopened.restore_tree(mid, dest)
    assert report.files == manifest.stats.files
    assert snapshot(dest) == snapshot(src)
    sparse = os.stat(os.path.join(dest, "sparse.img"))
    assert sparse.st_blocks * 512 < sparse.st_size // 2, "holes of a sparse file should be restored as holes"
    assert reopened.check(read_data=True).ok


def test_unencrypted_bank_roundtrip(local_backend, tmp_path):
    src, dest = str(tmp_path / "src"), str(tmp_path / "dest")
    make_tree(src, big_mib=1)
    bank = new_bank(local_backend, passphrase=None)
    assert not bank.encrypted
    with bank.writer("m1") as w:
        w.add_tree(src)
        w.commit()
    Bank.open(local_backend).restore_tree("m1", dest)
    assert snapshot(dest) == snapshot(src)
    # Only compressed: the readable text survives zstd framing in plain banks, never in encrypted ones.
    assert Bank.open(local_backend).check(read_data=True).ok


def test_encrypted_bank_reveals_no_plaintext(local_backend, tmp_path):
    bank = new_bank(local_backend)
    marker = b"UNIQUE-PLAINTEXT-MARKER-" * 10
    with bank.writer("m1") as w:
        w.add_stream("dump.sql", [marker], meta={"db": "x"})
        w.commit(meta={"name": "UNIQUE-META-MARKER"})
    for dirpath, _, files in os.walk(local_backend.root):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                data = f.read()
            assert b"UNIQUE-PLAINTEXT-MARKER" not in data
            assert b"UNIQUE-META-MARKER" not in data
            assert b"dump.sql" not in data


def test_streams_iterator_and_fileobj(backend):
    bank = new_bank(backend)
    payload = pseudo_random(1_500_000, "dump") + b"x" * 700_000
    pieces = [payload[i: i + 12345] for i in range(0, len(payload), 12345)]
    seen = []
    with bank.writer("streams") as w:
        w.add_stream("dump.sql", iter(pieces), meta={"engine": "postgres"}, on_progress=seen.append)
        w.add_stream("copy.bin", io.BytesIO(payload))
        w.add_stream("empty", [])
        w.commit()
    assert seen[-1].bytes_done == len(payload) and seen[-1].items_done == 1
    assert b"".join(bank.open_item("streams", "dump.sql")) == payload
    assert b"".join(bank.open_item("streams", "copy.bin")) == payload
    assert b"".join(bank.open_item("streams", "empty")) == b""
    items = {i.path: i for i in bank.read_manifest("streams").items()}
    assert items["dump.sql"].meta == {"engine": "postgres"}
    assert items["dump.sql"].size == len(payload)
    # The second stream is identical: fully deduplicated.
    assert bank.read_manifest("streams").stats.new_bytes < len(payload) * 1.1
    with pytest.raises(BankError, match="not found"):
        bank.open_item("streams", "nope")


def test_incremental_reuses_unchanged_files_without_reading(local_backend, tmp_path):
    src = str(tmp_path / "src")
    make_tree(src)
    bank = new_bank(local_backend)
    with bank.writer("full") as w:
        w.add_tree(src, prefix="fs")
        full = w.commit()
    with open(os.path.join(src, "small.txt"), "ab") as f:
        f.write(b"changed\n")
    os.unlink(os.path.join(src, "records.csv"))
    with bank.writer("incr", parent_id="full") as w:
        w.add_tree(src, prefix="fs")
        incr = w.commit()
    assert incr.parent_id == "full"
    assert incr.stats.bytes_read < 100, "only the changed file may be read"
    assert incr.stats.bytes_reused >= full.stats.bytes - 2 * 1024 * 1024 - 100
    dest = str(tmp_path / "dest")
    bank.restore_tree("incr", dest, prefix="fs")
    assert snapshot(dest) == snapshot(src)


def test_dedup_across_checkpoints_of_different_writers(local_backend, tmp_path):
    src = str(tmp_path / "src")
    make_tree(src)
    bank = new_bank(local_backend)
    with bank.writer("plan-a") as w:
        w.add_tree(src, prefix="project-a")
        first = w.commit()
    size_after_first = bank.stored_bytes()
    other = Bank.open(local_backend, PASSPHRASE)
    with other.writer("plan-b") as w:
        w.add_tree(src, prefix="project-b")
        second = w.commit()
    assert second.stats.bytes == first.stats.bytes
    assert second.stats.new_bytes < first.stats.new_bytes * 0.05
    assert bank.stored_bytes() - size_after_first < first.stats.new_stored_bytes * 0.05


def test_init_refuses_existing_and_init_or_open(local_backend):
    new_bank(local_backend)
    with pytest.raises(BankError, match="already exists"):
        Bank.init(local_backend, PASSPHRASE)
    bank = Bank.init_or_open(local_backend, PASSPHRASE, scrypt_n=FAST_KDF)
    assert bank.encrypted
    with pytest.raises(BankError, match="already exists"):
        with bank.writer("dup") as w:
            w.commit()
        bank.writer("dup")


def test_uncommitted_writer_leaves_no_checkpoint(local_backend):
    bank = new_bank(local_backend)
    with bank.writer("never") as w:
        w.add_stream("x", [pseudo_random(300_000, "x")])
    assert bank.list_manifests() == []
    with pytest.raises(BankError):
        bank.read_manifest("never")
    assert bank.check().ok
