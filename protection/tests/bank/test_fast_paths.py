"""The protect fast paths: GIL-free AEAD, O_DIRECT pack writes, small files read and sealed in batches."""
from __future__ import annotations

import os

import pytest

from protection.bank import Bank, CorruptionError, LocalBackend
from protection.bank import openssl_aead
from protection.bank.crypto import Crypto, MasterKey
from protection.bank.writer import Writer
from protection.tests.bank.conftest import PASSPHRASE, new_bank
from protection.tests.bank.helpers import pseudo_random, snapshot, text


def test_openssl_aead_is_available_on_this_platform():
    # Without it protect and restore still work, but every sealing thread stalls the others on the GIL.
    assert openssl_aead.AVAILABLE


@pytest.mark.parametrize("size", [0, 1000, 64 * 1024 - 2, 64 * 1024, 300_000, 4 * 1024 * 1024 + 3])
def test_chunks_sealed_either_way_open_either_way(size):
    master = MasterKey.generate()
    fast, portable = Crypto(master), Crypto(master)
    portable._gil_free_aead = False
    data = pseudo_random(size // 2, "half") + text(size - size // 2, "half")
    cid = fast.chunk_id(data)
    for sealer, opener in ((fast, portable), (portable, fast), (fast, fast)):
        blob = sealer.seal_chunk(cid, data)
        assert isinstance(blob, bytes)
        assert bytes(opener.open_chunk(cid, memoryview(blob))) == data
        for flipped in (0, len(blob) // 2, len(blob) - 1):  # nonce, body, tag
            damaged = bytearray(blob)
            damaged[flipped] ^= 0x40
            with pytest.raises(CorruptionError):
                opener.open_chunk(cid, bytes(damaged))
        with pytest.raises(CorruptionError):  # the AAD binds the blob to its id
            opener.open_chunk(bytes(32), blob)


@pytest.mark.parametrize("size", [0, 4095, 1024 * 1024 - 1, 1024 * 1024, 1024 * 1024 + 1, 5 * 1024 * 1024 + 4097])
def test_local_puts_of_any_size_read_back_whole(tmp_path, size):
    backend = LocalBackend(tmp_path / "bank")
    data = pseudo_random(size, f"put{size}")
    third = size // 3
    backend.put("packs/ab/multi", [data[:third], memoryview(data)[third:2 * third], b"", bytearray(data[2 * third:])])
    backend.put("packs/ab/single", memoryview(data))
    assert backend.get("packs/ab/multi") == data
    assert backend.get("packs/ab/single") == data
    assert backend.get_range("packs/ab/multi", max(0, size - 5000), 4000) == data[max(0, size - 5000):][:4000]
    assert sorted(os.listdir(tmp_path / "bank" / "packs" / "ab")) == ["multi", "single"]  # no temp file left


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs a tmpfs at /dev/shm")
def test_local_puts_on_tmpfs_fall_back_to_buffered_writes(tmp_path):
    root = f"/dev/shm/bank-test-{os.getpid()}-{tmp_path.name}"
    try:
        backend = LocalBackend(root)
        data = pseudo_random(3 * 1024 * 1024 + 5, "tmpfs")
        backend.put("packs/cd/p", [data[:100], data[100:]])
        assert backend.get("packs/cd/p") == data
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def _expected_walk_order(root: str) -> list:
    out = []

    def visit(directory: str, stored: str) -> None:
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            rel = f"{stored}/{name}" if stored else name
            out.append(rel)
            if os.path.isdir(path) and not os.path.islink(path):
                visit(path, rel)

    visit(root, "")
    return out


def test_many_small_files_between_large_ones_keep_content_and_walk_order(local_backend, tmp_path):
    src, dest = tmp_path / "src", str(tmp_path / "dest")
    for d in range(6):
        for f in range(40):
            path = src / f"d{d}" / (f"sub{f % 3}" if f % 5 == 0 else "") / f"f{f:03d}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text(1 + (f * 977 + d * 131) % 15000, f"{d}-{f}"))
        (src / f"d{d}" / "large.bin").write_bytes(pseudo_random(300_000 + d, f"large{d}"))
    (src / "d0" / "duplicate.txt").write_bytes(text(1 + (0 * 977) % 15000, "0-0"))
    bank = new_bank(local_backend)
    with bank.writer("m") as w:
        w.add_tree(str(src))
        manifest = w.commit()
    assert [item.path for item in manifest.items()] == _expected_walk_order(str(src))
    assert manifest.stats.files == 6 * 41 + 1 and not manifest.stats.warnings
    Bank.open(local_backend, PASSPHRASE).restore_tree("m", dest)
    assert snapshot(dest) == snapshot(str(src))


def _protect_with_walk_hook(bank, src: str, hook, monkeypatch):
    """Checkpoint ``m`` of ``src``, passing each walked entry through ``hook(path, stored, st) -> st``
    between the walk's stat and the read: the window in which a live tree changes."""
    walk = Writer._walk

    def hooked_walk(self, root, prefix):
        for path, stored, st in walk(self, root, prefix):
            yield path, stored, hook(path, stored, st)

    monkeypatch.setattr(Writer, "_walk", hooked_walk)
    with bank.writer("m") as w:
        w.add_tree(src)
        return w.commit()


def test_a_small_file_that_grew_after_its_stat_is_stored_whole(local_backend, tmp_path, monkeypatch):
    src, dest = tmp_path / "src", str(tmp_path / "dest")
    src.mkdir()
    (src / "a.txt").write_bytes(b"before")
    grown = pseudo_random(700_000, "grown")  # several chunks: stored like a large file
    (src / "grew.log").write_bytes(grown)
    (src / "z.txt").write_bytes(b"after")
    def stale_stat(path, stored, st):
        if stored == "grew.log":  # what stat said before the file grew
            st = os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid, 10,
                                 st.st_atime, st.st_mtime, st.st_ctime))
        return st

    bank = new_bank(local_backend)
    manifest = _protect_with_walk_hook(bank, str(src), stale_stat, monkeypatch)
    items = {item.path: item for item in manifest.items()}
    assert items["grew.log"].size == len(grown) and len(items["grew.log"].chunks) > 1
    bank.restore_tree("m", dest)
    assert (tmp_path / "dest" / "grew.log").read_bytes() == grown
    assert (tmp_path / "dest" / "a.txt").read_bytes() == b"before"


def test_a_small_file_deleted_before_it_is_read_is_skipped_with_a_warning(local_backend, tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.txt", "gone.txt", "z.txt"):
        (src / name).write_bytes(name.encode())
    def delete_after_stat(path, stored, st):
        if stored == "gone.txt":
            os.unlink(path)  # after the walk's stat, before a worker opens it
        return st

    manifest = _protect_with_walk_hook(new_bank(local_backend), str(src), delete_after_stat, monkeypatch)
    assert [item.path for item in manifest.items()] == ["a.txt", "z.txt"]
    assert len(manifest.stats.warnings) == 1 and manifest.stats.warnings[0].startswith("gone.txt: ")
