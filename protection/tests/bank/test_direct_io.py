"""O_DIRECT restore writes and pack reads: the bytes on disk are the bytes given, whatever the order."""
from __future__ import annotations

import os
import random
import shutil
import stat
import threading

import pytest

from protection.bank import Bank, LocalBackend
from protection.bank import direct_io
from protection.bank.direct_io import ALIGN, DirectFile
from protection.bank.safe_fs import TreeRestorer
from protection.tests.bank.conftest import PASSPHRASE, new_bank
from protection.tests.bank.helpers import pseudo_random, snapshot

pytestmark = pytest.mark.skipif(not direct_io.O_DIRECT, reason="no O_DIRECT on this platform")


def _direct_or_skip(path: str) -> int:
    fd = direct_io.open_direct("f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=_dir(path))
    if fd is None:
        pytest.skip(f"{path} does not take O_DIRECT")
    return fd


def _dir(path: str) -> int:
    os.makedirs(path, exist_ok=True)
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY)


def _pieces(data: bytes, seed: int):
    """Cut ``data`` at random places (pieces from 1 byte to 300 KiB) and shuffle them."""
    rng = random.Random(seed)
    cuts = [0]
    while cuts[-1] < len(data):
        cuts.append(min(len(data), cuts[-1] + rng.choice([1, 7, 100, ALIGN - 1, ALIGN, ALIGN + 1, 65536, 300_000])))
    pieces = [(cuts[i], data[cuts[i]:cuts[i + 1]]) for i in range(len(cuts) - 1)]
    rng.shuffle(pieces)
    return pieces


@pytest.mark.parametrize("size", [1, ALIGN - 1, ALIGN, 3 * ALIGN + 5, 5 * 1024 * 1024 + 123])
def test_out_of_order_pieces_from_threads_make_the_exact_file(tmp_path, size):
    data = pseudo_random(size, f"direct-{size}")
    fd = _direct_or_skip(str(tmp_path))
    target = DirectFile(fd, size)
    pieces = _pieces(data, size)
    threads = [threading.Thread(target=lambda part: [target.pwrite(chunk, off) for off, chunk in part],
                                args=(pieces[n::3],)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.unfinished() == 0
    os.ftruncate(fd, size)
    os.close(fd)
    with open(tmp_path / "f", "rb") as f:
        assert f.read() == data


def test_zero_runs_become_holes_and_a_missing_piece_is_noticed(tmp_path):
    size = 4 * 1024 * 1024
    data = bytearray(pseudo_random(size, "holes"))
    data[1024 * 1024:3 * 1024 * 1024] = bytes(2 * 1024 * 1024)
    fd = _direct_or_skip(str(tmp_path))
    target = DirectFile(fd, size)
    pieces = _pieces(bytes(data), 7)
    missing = next(p for p in pieces if p[0] % ALIGN and p[0] // ALIGN == (p[0] + len(p[1]) - 1) // ALIGN)
    for off, chunk in pieces:
        if (off, chunk) != missing:
            target.pwrite(chunk, off)
    assert target.unfinished() == 1  # the block the missing piece belongs to was never written
    target.pwrite(missing[1], missing[0])
    assert target.unfinished() == 0
    os.ftruncate(fd, size)
    os.close(fd)
    with open(tmp_path / "f", "rb") as f:
        assert f.read() == bytes(data)
    assert os.stat(tmp_path / "f").st_blocks * 512 <= size - 2 * 1024 * 1024 + 2 * 65536


def test_direct_range_reads_equal_buffered_ones(tmp_path):
    backend = LocalBackend(tmp_path / "bank")
    blob = pseudo_random(3 * 1024 * 1024 + 77, "pack")
    backend.put("packs/aa/pack", blob)
    rng = random.Random(3)
    for _ in range(40):
        offset = rng.randrange(0, len(blob))
        length = rng.choice([1, 4095, 1024 * 1024, 2 * 1024 * 1024 + 3, len(blob)])
        assert bytes(backend.get_range_view("packs/aa/pack", offset, length)) == backend.get_range(
            "packs/aa/pack", offset, length)
    assert bytes(backend.get_range_view("packs/aa/pack", len(blob) - 10, 1024 * 1024)) == blob[-10:]


def _big_tree(root: str) -> None:
    os.makedirs(os.path.join(root, "d"))
    for n, size in enumerate([1024 * 1024, 1024 * 1024 + 1, 3 * 1024 * 1024 - 17, 2 * 1024 * 1024 + ALIGN]):
        with open(os.path.join(root, "d", f"big{n}.bin"), "wb") as f:
            f.write(pseudo_random(size, f"big{n}"))
    block = pseudo_random(50_000, "twice")
    with open(os.path.join(root, "twice.bin"), "wb") as f:  # the same chunk at two unaligned offsets
        f.write(block * 30 + b"x")


def _protect(backend, src: str, **bank_kwargs) -> None:
    """Checkpoint ``src`` as manifest "m" in a new bank on ``backend``."""
    with new_bank(backend, **bank_kwargs).writer("m") as w:
        w.add_tree(src)
        w.commit()


@pytest.mark.parametrize("direct", ["1", "0"])
def test_restore_with_and_without_direct_writes_is_identical(local_backend, tmp_path, monkeypatch, direct):
    monkeypatch.setenv("BANK_RESTORE_DIRECT", direct)
    src = str(tmp_path / "src")
    _big_tree(src)
    _protect(local_backend, src, pack_size=2 * 1024 * 1024)
    dest = str(tmp_path / "dest")
    Bank.open(local_backend, PASSPHRASE, workers=3).restore_tree("m", dest)
    assert snapshot(dest) == snapshot(src)


def test_restore_into_tmpfs_and_with_direct_writes_off_is_identical(local_backend, tmp_path):
    """Another file system (tmpfs, which on recent kernels takes O_DIRECT too), and a restorer told not to."""
    shm = "/dev/shm"
    if not os.path.isdir(shm):
        pytest.skip("no tmpfs at /dev/shm")
    src = str(tmp_path / "src")
    _big_tree(src)
    _protect(local_backend, src)
    dest = os.path.join(shm, f"karbor-direct-{os.getpid()}-{random.randrange(1 << 30)}")
    try:
        Bank.open(local_backend, PASSPHRASE, workers=2).restore_tree("m", dest)
        assert snapshot(dest) == snapshot(src)
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    restorer = TreeRestorer(str(tmp_path / "off"), direct=False)
    try:
        assert restorer.open_direct_file("f") is None
    finally:
        restorer.close()


def test_modes_the_umask_would_strip_and_set_id_bits_come_back(local_backend, tmp_path):
    """Files are created with their final mode when the umask allows it; the others get a chmod."""
    src = str(tmp_path / "src")
    os.makedirs(src)
    modes = {"shared.txt": 0o666, "setuid": 0o4755, "readonly.txt": 0o444, "plain.txt": 0o644,
             "big-shared.bin": 0o666}
    for name, mode in modes.items():
        with open(os.path.join(src, name), "wb") as f:
            f.write(pseudo_random(2 * 1024 * 1024 if name.startswith("big") else 1000, name))
        os.chmod(os.path.join(src, name), mode)
    _protect(local_backend, src)
    dest = str(tmp_path / "dest")
    old = os.umask(0o022)
    try:
        Bank.open(local_backend, PASSPHRASE, workers=2).restore_tree("m", dest)
    finally:
        os.umask(old)
    assert {name: stat.S_IMODE(os.stat(os.path.join(dest, name)).st_mode) for name in modes} == modes
    assert snapshot(dest) == snapshot(src)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="owners are restored only as root")
def test_owners_come_back_also_where_the_chown_is_skipped(local_backend, tmp_path):
    """As root, a file of root's own uid and gid needs no chown, unless its directory is set-group-ID."""
    src = str(tmp_path / "src")
    os.makedirs(os.path.join(src, "shared"))
    os.chmod(os.path.join(src, "shared"), 0o2775)
    owners = {"mine.txt": (0, 0), "other.txt": (1234, 5678), "shared/mine.txt": (0, 0), "shared/other.txt": (1234, 0)}
    for name, (uid, gid) in owners.items():
        with open(os.path.join(src, name), "wb") as f:
            f.write(name.encode())
        os.chown(os.path.join(src, name), uid, gid)
    os.chown(os.path.join(src, "shared"), 0, 4321)  # new files below it would take group 4321
    _protect(local_backend, src)
    dest = str(tmp_path / "dest")
    os.makedirs(os.path.join(dest, "shared"))
    os.chown(os.path.join(dest, "shared"), 0, 4321)
    os.chmod(os.path.join(dest, "shared"), 0o2775)  # the destination's directory is set-group-ID already
    Bank.open(local_backend, PASSPHRASE, workers=2).restore_tree("m", dest)
    got = {name: (os.stat(os.path.join(dest, name)).st_uid, os.stat(os.path.join(dest, name)).st_gid)
           for name in owners}
    assert got == owners
