"""A restore writes through directory descriptors: a symlink swapped in mid-restore cannot redirect it."""
from __future__ import annotations

import os

import pytest

from protection.bank import Bank, BankError
from protection.bank import safe_fs
from protection.tests.bank.conftest import new_bank
from protection.tests.bank.helpers import pseudo_random, snapshot


def _tree(root: str) -> None:
    """``a.txt``, then ``sub/`` with files and a nested dir, then ``zlater/`` (walked in name order)."""
    os.makedirs(os.path.join(root, "sub", "nested"))
    os.makedirs(os.path.join(root, "zlater"))
    with open(os.path.join(root, "a.txt"), "wb") as f:
        f.write(b"first\n")
    for n in range(4):
        with open(os.path.join(root, "sub", f"f{n}.bin"), "wb") as f:
            f.write(pseudo_random(50_000 + n, f"sub-{n}"))
    with open(os.path.join(root, "sub", "nested", "deep.txt"), "wb") as f:
        f.write(b"deep\n")
    with open(os.path.join(root, "zlater", "z.txt"), "wb") as f:
        f.write(b"z\n")


@pytest.fixture
def checkpoint(local_backend, tmp_path) -> tuple[Bank, str]:
    bank = new_bank(local_backend)
    src = str(tmp_path / "src")
    _tree(src)
    with bank.writer("cp") as writer:
        writer.add_tree(src)
        writer.commit()
    return bank, src


def _outside(tmp_path) -> str:
    outside = str(tmp_path / "outside")
    os.makedirs(outside)
    return outside


def _written_outside(outside: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, n), outside) for d, ds, fs in os.walk(outside) for n in ds + fs)


def _restore_swapping_sub(bank: Bank, dest: str, outside: str) -> None:
    """Restore while, between items, sub/ is moved aside and a symlink to ``outside`` put in its place."""
    swapped = []

    def swap_sub_for_symlink(_progress) -> None:
        sub = os.path.join(dest, "sub")
        if not swapped and os.path.isdir(sub) and not os.path.islink(sub):
            os.rename(sub, sub + ".moved")
            os.symlink(outside, sub)
            swapped.append(True)

    try:
        bank.restore_tree("cp", dest, on_progress=swap_sub_for_symlink)
    except BankError as exc:
        assert "symlink" in str(exc)
    assert swapped
    assert _written_outside(outside) == []


def test_subdirectory_swapped_for_a_symlink_mid_restore_gets_no_write_outside(checkpoint, tmp_path):
    bank, src = checkpoint
    dest, outside = str(tmp_path / "dest"), _outside(tmp_path)
    _restore_swapping_sub(bank, dest, outside)
    # The writes that were under way went on into the directory that was opened, wherever it is now.
    assert set(os.listdir(os.path.join(dest, "sub.moved"))) <= {"f0.bin", "f1.bin", "f2.bin", "f3.bin", "nested"}


def test_destination_swapped_for_a_symlink_mid_restore_still_restores_into_the_original(checkpoint, tmp_path):
    bank, src = checkpoint
    dest, outside = str(tmp_path / "dest"), _outside(tmp_path)
    swapped = []

    def swap_destination(_progress) -> None:
        if not swapped:
            os.rename(dest, dest + ".moved")
            os.symlink(outside, dest)
            swapped.append(True)

    bank.restore_tree("cp", dest, on_progress=swap_destination)
    assert swapped
    assert _written_outside(outside) == []
    assert snapshot(dest + ".moved") == snapshot(src)


def test_directory_planted_as_a_symlink_before_it_is_created_stops_the_restore(checkpoint, tmp_path):
    bank, _src = checkpoint
    dest, outside = str(tmp_path / "dest"), _outside(tmp_path)

    def plant(_progress) -> None:
        later = os.path.join(dest, "zlater")
        if not os.path.lexists(later):
            os.symlink(outside, later)

    with pytest.raises(BankError, match="refusing to write through .*zlater.*symlink"):
        bank.restore_tree("cp", dest, on_progress=plant)
    assert _written_outside(outside) == []


def test_destination_below_a_symlink_is_refused_before_writing(checkpoint, tmp_path):
    bank, _src = checkpoint
    outside = _outside(tmp_path)
    os.symlink(outside, str(tmp_path / "link"))
    with pytest.raises(BankError, match="refusing to write through"):
        bank.restore_tree("cp", str(tmp_path / "link" / "dest"))
    assert _written_outside(outside) == []


def test_evicted_directory_descriptors_are_reopened_without_following_symlinks(checkpoint, tmp_path, monkeypatch):
    bank, src = checkpoint
    monkeypatch.setattr(safe_fs, "MAX_CACHED_DIRS", 1)  # every directory is reopened by name each time
    dest = str(tmp_path / "dest")
    bank.restore_tree("cp", dest)
    assert snapshot(dest) == snapshot(src)

    _restore_swapping_sub(bank, str(tmp_path / "dest2"), _outside(tmp_path))


def test_restorer_keeps_few_directory_descriptors_open(tmp_path, monkeypatch):
    monkeypatch.setattr(safe_fs, "MAX_CACHED_DIRS", 8)
    restorer = safe_fs.TreeRestorer(str(tmp_path / "dest"))
    from protection.bank.manifest import TYPE_DIR, Item

    for n in range(100):
        restorer.make_dir(f"d{n}", Item(path=f"d{n}", type=TYPE_DIR, mode=0o40755))
        assert len(restorer._fds) <= 9
    restorer.finish()
    assert restorer._fds == {}
    assert len(os.listdir(tmp_path / "dest")) == 100


def test_refused_restore_leaves_no_descriptor_open(checkpoint, tmp_path):
    bank, _src = checkpoint
    dest, outside = str(tmp_path / "dest"), _outside(tmp_path)
    bank.restore_tree("cp", str(tmp_path / "warm"))  # thread pools and caches exist before counting
    open_before = len(os.listdir("/proc/self/fd"))

    def plant(_progress) -> None:
        later = os.path.join(dest, "zlater")
        if not os.path.lexists(later):
            os.symlink(outside, later)

    with pytest.raises(BankError) as caught:
        bank.restore_tree("cp", dest, on_progress=plant)
    # Still holding the traceback (as a caller logging it would): closing must not wait for the GC.
    assert caught.traceback and len(os.listdir("/proc/self/fd")) == open_before
