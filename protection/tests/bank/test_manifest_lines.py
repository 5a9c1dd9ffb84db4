"""Item lines: byte for byte what json.dumps gives (tree chunks deduplicate only if unchanged items keep their bytes)."""
from __future__ import annotations

import json
import os
import random

from protection.bank.manifest import TYPE_DIR, TYPE_FILE, TYPE_STREAM, TYPE_SYMLINK, Item
from protection.tests.bank.conftest import new_bank


def _reference(item: Item) -> str:
    """The encoding the bank has always written: a dict through json.dumps."""
    doc = {"p": item.path, "t": item.type, "m": item.mode, "s": item.size}
    if item.uid or item.gid:
        doc["u"], doc["g"] = item.uid, item.gid
    if item.mtime_ns:
        doc["mt"] = item.mtime_ns
    if item.target is not None:
        doc["l"] = item.target
    if item.chunks:
        doc["c"] = "".join(cid.hex() for cid, _ in item.chunks)
        doc["cs"] = [size for _, size in item.chunks]
    if item.meta:
        doc["x"] = item.meta
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


NAMES = ["plain.txt", 'quote " and \\ backslash', "tab\tnew\nline\x01\x1f", "ünïcødé 目录/файл", "emoji 😀",
         "lone surrogate \udcff escaped", "/", "a" * 300, ""]


def _items(rng: random.Random):
    for n, name in enumerate(NAMES * 6):
        kind = [TYPE_FILE, TYPE_DIR, TYPE_SYMLINK, TYPE_STREAM][n % 4]
        chunks = [(rng.randbytes(32), rng.randint(0, 1 << 40)) for _ in range(rng.choice([0, 1, 3]))]
        yield Item(
            path=name, type=kind, mode=rng.choice([0, 0o644, 0o4755]), uid=rng.choice([0, 1000]),
            gid=rng.choice([0, 0, 27]), mtime_ns=rng.choice([0, 1_700_000_000_123_456_789, -5]),
            size=sum(size for _, size in chunks), target=name if kind == TYPE_SYMLINK else rng.choice([None, ""]),
            chunks=chunks, meta=rng.choice([None, {}, {"engine": "pg", "tables": ["ä", 1, None, 2.5]}]),
        )


def test_item_lines_equal_json_dumps_and_read_back():
    for item in _items(random.Random(7)):
        line = item.to_json()
        assert line == _reference(item), item
        back = Item.from_json(line)
        assert back == Item(**{**item.__dict__, "meta": item.meta or None})  # an empty meta is not written


def test_file_names_that_are_not_utf8_or_hold_line_separators_come_back_byte_for_byte(local_backend, tmp_path):
    """Linux names are bytes: Latin-1 names from old systems, and U+2028 / NEL, which str.splitlines splits on."""
    src = tmp_path / "src"
    names = [b"caf\xe9.txt", b"line\xe2\x80\xa8sep.txt", b"nel\xc2\x85.txt", b"plain.txt"]
    os.makedirs(os.path.join(bytes(src), b"dir\xff"))
    for name in names:
        with open(os.path.join(bytes(src), b"dir\xff", name), "wb") as f:
            f.write(name * 3)
    bank = new_bank(local_backend)
    with bank.writer("names") as w:
        w.add_tree(str(src))
        w.commit()
    dest = tmp_path / "dest"
    bank.restore_tree("names", str(dest))
    assert sorted(os.listdir(os.path.join(bytes(dest), b"dir\xff"))) == sorted(names)
    for name in names:
        with open(os.path.join(bytes(dest), b"dir\xff", name), "rb") as f:
            assert f.read() == name * 3
