"""Damaged banks: every kind of damage is reported by check and by restore, naming the item."""
from __future__ import annotations

import os

import pytest

from protection.bank import Bank, BankError, CorruptionError, LocalBackend, WrongPassphraseError
from protection.bank.index import pack_key
from protection.tests.bank.conftest import PASSPHRASE, new_bank
from protection.tests.bank.helpers import pseudo_random

VICTIM = "data/victim.bin"
BYSTANDER = pseudo_random(150_000, "bystander")


@pytest.fixture(params=["encrypted", "plain"])
def damaged_setup(request, tmp_path):
    """A bank with two files in *different* packs, so damage to one leaves the other intact."""
    backend = LocalBackend(tmp_path / "bank")
    passphrase = PASSPHRASE if request.param == "encrypted" else None
    bank = new_bank(backend, passphrase=passphrase, pack_size=64 * 1024)
    src = tmp_path / "src"
    (src / "data").mkdir(parents=True)
    (src / "data" / "victim.bin").write_bytes(pseudo_random(900_000, "victim"))
    (src / "data" / "bystander.txt").write_bytes(BYSTANDER)
    with bank.writer("ckpt") as w:
        w.add_tree(str(src))
        w.commit()
    manifest = bank.read_manifest("ckpt")
    items = {i.path: i for i in manifest.items()}
    lookup = bank.load_lookup()
    # Spare the bystander's packs and the item list's: damage there is reported, but as an
    # unreadable item list, which cannot name the victim item.
    bystander_packs = {lookup[cid].pack for cid, _ in items["data/bystander.txt"].chunks}
    bystander_packs |= {lookup[cid].pack for cid in manifest.tree_chunks}
    victim_loc = next(lookup[cid] for cid, _ in items[VICTIM].chunks if lookup[cid].pack not in bystander_packs)
    pack_path = os.path.join(backend.root, *pack_key(victim_loc.pack).split("/"))
    return Bank.open(backend, passphrase), victim_loc, pack_path, tmp_path


def _assert_reported(bank: Bank, tmp_path, read_data: bool) -> None:
    report = bank.check(read_data=read_data)
    assert not report.ok
    assert any(VICTIM in e for e in report.errors), report.errors
    assert not any("bystander" in e for e in report.errors), report.errors
    with pytest.raises(CorruptionError, match=VICTIM):
        bank.restore_tree("ckpt", str(tmp_path / "restore"))
    with pytest.raises(CorruptionError, match=VICTIM):
        b"".join(bank.open_item("ckpt", VICTIM))
    assert b"".join(bank.open_item("ckpt", "data/bystander.txt")) == BYSTANDER


def test_clean_bank_checks_ok(damaged_setup):
    bank, _, _, _ = damaged_setup
    assert bank.check().ok
    full = bank.check(read_data=True)
    assert full.ok and full.chunks_read == full.chunks > 0


def test_flipped_byte_in_pack(damaged_setup):
    bank, loc, pack_path, tmp_path = damaged_setup
    with open(pack_path, "r+b") as f:
        f.seek(loc.offset + loc.length // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))
    assert bank.check(read_data=False).ok, "a structural check does not read data"
    _assert_reported(bank, tmp_path, read_data=True)


def test_flipped_byte_in_pack_trailer_is_reported(damaged_setup):
    bank, loc, pack_path, _ = damaged_setup
    size = os.path.getsize(pack_path)
    with open(pack_path, "r+b") as f:
        f.seek(size - 20)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x80]))
    report = bank.check(read_data=True)
    assert not report.ok and any("trailer" in e for e in report.errors), report.errors


def test_truncated_pack(damaged_setup):
    bank, loc, pack_path, tmp_path = damaged_setup
    os.truncate(pack_path, loc.offset + 10)
    _assert_reported(bank, tmp_path, read_data=False)


def test_missing_pack(damaged_setup):
    bank, loc, pack_path, tmp_path = damaged_setup
    os.unlink(pack_path)
    _assert_reported(bank, tmp_path, read_data=False)


def test_missing_index_is_reported_not_ignored(damaged_setup):
    bank, _, _, tmp_path = damaged_setup
    for info in list(bank.backend.list("index/")):
        bank.backend.delete(info.key)
    report = bank.check()
    assert not report.ok
    with pytest.raises(CorruptionError, match="missing from the index"):
        bank.restore_tree("ckpt", str(tmp_path / "restore"))


def test_corrupted_manifest_is_reported(damaged_setup):
    bank, _, _, tmp_path = damaged_setup
    path = os.path.join(bank.backend.root, "manifests", "ckpt")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x10
    open(path, "wb").write(bytes(data))
    report = bank.check()
    assert not report.ok and any("ckpt" in e for e in report.errors)
    with pytest.raises(CorruptionError, match="manifest ckpt"):
        bank.restore_tree("ckpt", str(tmp_path / "restore"))


def test_wrong_passphrase_and_key_rotation(tmp_path):
    backend = LocalBackend(tmp_path / "bank")
    bank = new_bank(backend)
    with bank.writer("ckpt") as w:
        w.add_stream("dump.sql", [b"select 1;\n" * 1000])
        w.commit()
    with pytest.raises(WrongPassphraseError, match="wrong passphrase"):
        Bank.open(backend, "not the passphrase")
    with pytest.raises(BankError, match="passphrase is required"):
        Bank.open(backend, None)
    packs_before = sorted(i.key for i in backend.list("packs/"))
    bank.change_passphrase("new passphrase", scrypt_n=2**12)
    with pytest.raises(WrongPassphraseError):
        Bank.open(backend, PASSPHRASE)
    reopened = Bank.open(backend, "new passphrase")
    assert b"".join(reopened.open_item("ckpt", "dump.sql")) == b"select 1;\n" * 1000
    assert sorted(i.key for i in backend.list("packs/")) == packs_before, "rotation must not rewrite data"
    assert reopened.check(read_data=True).ok


def test_key_file_of_another_bank_is_rejected(tmp_path):
    first, second = LocalBackend(tmp_path / "a"), LocalBackend(tmp_path / "b")
    new_bank(first)
    new_bank(second)
    with open(os.path.join(first.root, "keys", "key"), "rb") as f:
        foreign_key = f.read()
    second.put("keys/key", foreign_key)
    with pytest.raises(WrongPassphraseError):
        Bank.open(second, PASSPHRASE)
