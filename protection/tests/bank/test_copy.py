"""Copying checkpoints between banks with different keys: byte-identical, and only what the destination lacks."""
from __future__ import annotations

import os

import pytest

from protection.bank import Bank, BankError, LocalBackend
from protection.tests.bank.conftest import make_s3_backend, new_bank
from protection.tests.bank.helpers import make_tree, pseudo_random, snapshot, text


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.server)])
def destination(request, tmp_path) -> Bank:
    """An empty bank with its own passphrase (so its chunk ids differ), local or on the S3 server."""
    if request.param == "local":
        backend = LocalBackend(tmp_path / "destination")
    else:
        backend = make_s3_backend(request.getfixturevalue("s3_server"), prefix="copies")
    return new_bank(backend, passphrase="the destination's own passphrase")


def _dataset(root: str, files: int = 40, size: int = 256 * 1024) -> None:
    os.makedirs(os.path.join(root, "data"))
    for n in range(files):
        maker = pseudo_random if n % 2 else text
        with open(os.path.join(root, "data", f"f{n:03d}.bin"), "wb") as f:
            f.write(maker(size, f"file {n}"))


def _change_five_percent(root: str) -> None:
    """About 5 % of the bytes: one region rewritten, one file appended to, one file added."""
    with open(os.path.join(root, "data", "f003.bin"), "r+b") as f:
        f.seek(100_000)
        f.write(pseudo_random(64 * 1024, "edit"))
    with open(os.path.join(root, "data", "f010.bin"), "ab") as f:
        f.write(pseudo_random(96 * 1024, "append"))
    with open(os.path.join(root, "data", "new.bin"), "wb") as f:
        f.write(pseudo_random(256 * 1024, "new file"))


def _restored(bank: Bank, mid: str, dest: str) -> dict:
    bank.restore_tree(mid, dest)
    return snapshot(dest)


def test_copy_restores_byte_identical_from_the_destination(local_backend, destination, tmp_path):
    src = str(tmp_path / "src")
    make_tree(src, big_mib=2)
    source = new_bank(local_backend)
    with source.writer("ckpt") as w:
        w.add_tree(src)
        w.add_stream("dump.sql", [b"insert into t values (1);\n" * 5000], meta={"db": "app"})
        w.commit(meta={"plan": "nightly"})

    report = source.copy_manifest_to(destination, "ckpt")

    assert report.manifest.meta == {"plan": "nightly"}
    assert report.bytes == source.read_manifest("ckpt").stats.bytes
    assert report.bytes_read == report.bytes and report.chunks_read == report.chunks
    assert report.bytes_sent > 0 and report.chunks_sent + report.chunks_reused == report.chunks
    dest = str(tmp_path / "restored")
    destination.restore_tree("ckpt", dest)
    os.unlink(os.path.join(dest, "dump.sql"))
    assert snapshot(dest) == snapshot(src)
    assert b"".join(destination.open_item("ckpt", "dump.sql")) == b"insert into t values (1);\n" * 5000
    assert destination.check(read_data=True).ok


def test_second_copy_after_a_five_percent_change_sends_under_ten_percent(local_backend, destination, tmp_path):
    src = str(tmp_path / "src")
    _dataset(src)
    source = new_bank(local_backend)
    with source.writer("monday") as w:
        w.add_tree(src)
        w.commit()
    first = source.copy_manifest_to(destination, "monday")
    _change_five_percent(src)
    with source.writer("tuesday", parent_id="monday") as w:
        w.add_tree(src)
        w.commit()

    second = source.copy_manifest_to(destination, "tuesday")

    share = second.bytes_sent / second.bytes
    print(f"\nfirst copy sent {first.bytes_sent} bytes of {first.bytes}; second copy after a 5 % change sent "
          f"{second.bytes_sent} of {second.bytes} ({share:.1%}), read {second.bytes_read} from the source, "
          f"reused {second.chunks_reused}/{second.chunks} chunks")
    assert second.reference_id == "monday"
    assert share < 0.10
    assert second.bytes_read < 0.10 * second.bytes  # unchanged chunks are mapped, not even read
    assert second.chunks_reused > 0.85 * second.chunks
    assert _restored(destination, "tuesday", str(tmp_path / "tuesday")) == snapshot(src)
    assert destination.check(read_data=True).ok


def test_copy_without_an_earlier_copy_still_sends_only_what_the_destination_lacks(local_backend, tmp_path):
    src = str(tmp_path / "src")
    _dataset(src, files=10)
    source = new_bank(local_backend)
    with source.writer("a") as w:
        w.add_tree(src)
        w.commit()
    with source.writer("b") as w:  # the same content under another id, no parent
        w.add_tree(src)
        w.commit()
    destination = new_bank(LocalBackend(tmp_path / "destination"), passphrase=None)
    source.copy_manifest_to(destination, "a")
    destination.delete_manifest("a")  # no reference left: the data is still in the destination

    report = source.copy_manifest_to(destination, "b")

    assert report.reference_id is None
    assert report.bytes_read == report.bytes  # read to learn the destination's ids ...
    assert report.chunks_sent == 0  # ... but nothing it holds is sent again
    assert report.bytes_sent < 0.05 * report.bytes
    assert _restored(destination, "b", str(tmp_path / "b")) == snapshot(src)


def test_a_native_checkpoint_with_the_same_id_is_not_trusted_as_a_reference(local_backend, tmp_path):
    """Same paths and sizes but other content: pairing its chunk ids would restore the wrong bytes."""
    src, other = str(tmp_path / "src"), str(tmp_path / "other")
    _dataset(src, files=6, size=8 * 1024)  # single-chunk files: sizes alone would pair them
    _dataset(other, files=6, size=8 * 1024)
    for name in os.listdir(os.path.join(other, "data")):
        with open(os.path.join(other, "data", name), "r+b") as f:
            f.write(b"different content")
    source = new_bank(local_backend)
    with source.writer("monday") as w:
        w.add_tree(src)
        w.commit()
    with source.writer("tuesday", parent_id="monday") as w:
        w.add_tree(src)
        w.commit()
    destination = new_bank(LocalBackend(tmp_path / "destination"), passphrase="another")
    with destination.writer("monday") as w:  # written there directly, not copied
        w.add_tree(other)
        w.commit()

    report = source.copy_manifest_to(destination, "tuesday")

    assert report.reference_id is None
    assert _restored(destination, "tuesday", str(tmp_path / "restored")) == snapshot(src)


def test_copy_refuses_bad_requests(local_backend, tmp_path):
    source = new_bank(local_backend)
    with source.writer("ckpt") as w:
        w.add_stream("s", [b"data"])
        w.commit()
    destination = new_bank(LocalBackend(tmp_path / "destination"))
    with pytest.raises(BankError, match="same bank"):
        source.copy_manifest_to(Bank.open(local_backend, "correct horse battery staple"), "ckpt")
    with pytest.raises(BankError, match="not found"):
        source.copy_manifest_to(destination, "missing")
    with pytest.raises(BankError, match="not a copy"):
        source.copy_manifest_to(destination, "ckpt", reference_id="missing")
    source.copy_manifest_to(destination, "ckpt")
    with pytest.raises(BankError, match="already exists"):
        source.copy_manifest_to(destination, "ckpt")
    assert destination.list_manifests() == ["ckpt"]


def test_cli_copy_creates_the_destination_and_reports(tmp_path, monkeypatch, capsys):
    import json

    from protection.bank import cli

    src = str(tmp_path / "src")
    _dataset(src, files=4)
    monkeypatch.setenv("BANK_PASSPHRASE", "source secret")
    monkeypatch.setenv("BANK_TO_PASSPHRASE", "destination secret")
    source_dir, dest_dir = str(tmp_path / "source"), str(tmp_path / "destination")
    assert cli.main(["--bank", source_dir, "init"]) == 0
    assert cli.main(["--bank", source_dir, "protect", src, "--id", "ckpt"]) == 0
    capsys.readouterr()

    assert cli.main(["--bank", source_dir, "copy", "ckpt", "--to-bank", dest_dir]) == 0

    report = json.loads(capsys.readouterr().out)
    assert report["id"] == "ckpt" and report["bytes"] == 4 * 256 * 1024 and report["bytes_sent"] > 0
    destination = Bank.open(LocalBackend(dest_dir), "destination secret")
    assert _restored(destination, "ckpt", str(tmp_path / "restored")) == snapshot(src)
    assert cli.main(["--bank", source_dir, "copy", "ckpt"]) == 2  # no destination named


def test_copies_under_their_own_ids_with_their_own_meta_still_pair_up(local_backend, tmp_path):
    """The service gives each copy a new checkpoint id and its own catalog meta: the next copy
    still finds the previous one through its origin and sends only what changed."""
    src = str(tmp_path / "src")
    _dataset(src)
    source = new_bank(local_backend)
    with source.writer("monday") as w:
        w.add_tree(src)
        w.commit(meta={"checkpoint": {"id": "monday"}})
    destination = new_bank(LocalBackend(tmp_path / "destination"), passphrase="another")
    first = source.copy_manifest_to(destination, "monday", target_id="copy-1", meta={"checkpoint": {"id": "copy-1"}})
    _change_five_percent(src)
    with source.writer("tuesday", parent_id="monday") as w:
        w.add_tree(src)
        w.commit()

    second = source.copy_manifest_to(destination, "tuesday", target_id="copy-2", meta={"checkpoint": {"id": "copy-2"}})

    assert first.manifest.id == "copy-1" and not destination.manifest_exists("monday")
    assert destination.read_manifest("copy-2").meta == {"checkpoint": {"id": "copy-2"}}
    assert destination.read_manifest("copy-2").parent_id == "copy-1"
    assert second.reference_id == "copy-1"
    assert second.bytes_sent < 0.10 * second.bytes and second.bytes_read < 0.10 * second.bytes
    assert _restored(destination, "copy-2", str(tmp_path / "restored")) == snapshot(src)
