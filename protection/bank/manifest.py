"""Checkpoint manifests and the item records they reference.

A manifest object ``manifests/<id>`` is a small sealed JSON document (caller meta, stats,
and the ids of its *tree chunks*). The item list itself is JSON lines stored as ordinary
chunks in packs (compressed, encrypted, deduplicated), cut at item boundaries chosen by
content, so a tree of 100k files neither bloats the manifest nor has to fit in memory.
The manifest is written last, with one atomic put: its presence means "complete".
"""
from __future__ import annotations

import json
import re
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from typing import Callable, Iterator, List, Optional, Tuple

from .errors import BankError

MANIFEST_PREFIX = "manifests/"
MANIFEST_KIND = "manifest"
_ITEM_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_json_string = encode_basestring  # the string encoder of ensure_ascii=False (C-accelerated)
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

TYPE_FILE = "file"
TYPE_DIR = "dir"
TYPE_SYMLINK = "symlink"
TYPE_STREAM = "stream"
ITEM_TYPES = (TYPE_FILE, TYPE_DIR, TYPE_SYMLINK, TYPE_STREAM)


def validate_manifest_id(manifest_id: str) -> str:
    """Reject ids that are not safe as an object-key component."""
    if not isinstance(manifest_id, str) or not _ID_RE.match(manifest_id) or ".." in manifest_id:
        raise BankError(f"invalid manifest id {manifest_id!r} (use a UUID string)")
    return manifest_id


def manifest_key(manifest_id: str) -> str:
    """Object key of a manifest."""
    return MANIFEST_PREFIX + validate_manifest_id(manifest_id)


@dataclass
class Item:
    """One entry of a checkpoint: a file, directory, symlink or a non-file stream.

    ``chunks`` is the ordered list of (chunk id, plaintext size); ``meta`` holds the
    caller's extra metadata for streams.
    """

    path: str
    type: str
    mode: int = 0
    uid: int = 0
    gid: int = 0
    mtime_ns: int = 0
    size: int = 0
    target: Optional[str] = None
    chunks: List[Tuple[bytes, int]] = field(default_factory=list)
    meta: Optional[dict] = None

    def to_json(self) -> str:
        # Assembled by hand, byte for byte what json.dumps(separators=(",", ":"), ensure_ascii=False)
        # of the dict gives (test_manifest_lines): unchanged items must keep their bytes, or tree
        # chunks stop deduplicating. Items are encoded by the thousand; a dict and an encoder
        # call each were most of an incremental's time per unchanged file.
        parts = ['{"p":', _json_string(self.path), ',"t":', _json_string(self.type),
                 ',"m":', str(self.mode), ',"s":', str(self.size)]
        if self.uid or self.gid:
            parts += ',"u":', str(self.uid), ',"g":', str(self.gid)
        if self.mtime_ns:
            parts += ',"mt":', str(self.mtime_ns)
        if self.target is not None:
            parts += ',"l":', _json_string(self.target)
        if self.chunks:
            parts += (',"c":"', "".join(cid.hex() for cid, _ in self.chunks),
                      '","cs":[', ",".join(str(size) for _, size in self.chunks), "]")
        if self.meta:
            parts += ',"x":', _ITEM_ENCODER.encode(self.meta)
        parts.append("}")
        return "".join(parts)

    @classmethod
    def from_json(cls, line: str) -> "Item":
        return cls.from_doc(json.loads(line))

    @classmethod
    def from_doc(cls, d: dict) -> "Item":
        sizes = d.get("cs")
        if sizes:
            ids = bytes.fromhex(d["c"])
            chunks = [(ids[32 * i: 32 * i + 32], size) for i, size in enumerate(sizes)]
        else:
            chunks = []
        return cls(d["p"], d["t"], d.get("m", 0), d.get("u", 0), d.get("g", 0), d.get("mt", 0), d.get("s", 0),
                   d.get("l"), chunks, d.get("x"))


class TreeBuffer:
    """Collect item JSON lines and cut them into tree chunks at content-defined item boundaries.

    Boundaries depend on the item line itself (CRC of the line), so an unchanged run of
    items produces the same tree chunk in the next checkpoint and deduplicates.
    """

    def __init__(self, emit: Callable[[bytes], None], min_size: int = 64 * 1024, max_size: int = 1024 * 1024) -> None:
        self._emit = emit
        self._lines: List[bytes] = []
        self._size = 0
        self.min_size = min_size
        self.max_size = max_size

    def add(self, item: Item) -> None:
        # A Linux file name is bytes, not always UTF-8: os gives such bytes as lone surrogates
        # (surrogateescape), written back here as the bytes they stand for, and read back as such.
        line = item.to_json().encode("utf-8", "surrogateescape") + b"\n"
        self._lines.append(line)
        self._size += len(line)
        if self._size >= self.max_size or (self._size >= self.min_size and zlib.crc32(line) % 16 == 0):
            self.flush()

    def flush(self) -> None:
        if self._lines:
            data = b"".join(self._lines)
            self._lines, self._size = [], 0
            self._emit(data)


@dataclass
class ManifestStats:
    """Counters of one checkpoint."""

    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    streams: int = 0
    bytes: int = 0
    bytes_read: int = 0
    bytes_reused: int = 0
    new_chunks: int = 0
    new_bytes: int = 0
    new_stored_bytes: int = 0
    skipped: int = 0
    warnings: List[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__, warnings=self.warnings[:100])

    @classmethod
    def from_dict(cls, d: dict) -> "ManifestStats":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class Manifest:
    """A committed checkpoint: caller meta, stats and a lazily streamed item list."""

    def __init__(self, doc: dict, load_chunk: Callable[[bytes, str], bytes]) -> None:
        self.id: str = doc["id"]
        self.meta: dict = doc.get("meta", {})
        self.stats = ManifestStats.from_dict(doc.get("stats", {}))
        self.created: float = doc.get("created", 0.0)
        self.parent_id: Optional[str] = doc.get("parent_id")
        # Set on a checkpoint copied from another bank: {"bank_id": ..., "manifest_id": ...}.
        self.origin: Optional[dict] = doc.get("origin")
        hexes = doc.get("tree", "")
        self.tree_chunks: List[bytes] = [bytes.fromhex(hexes[64 * i: 64 * (i + 1)]) for i in range(len(hexes) // 64)]
        self._load_chunk = load_chunk

    def items(self) -> Iterator[Item]:
        """Stream the items in the order they were written (at most two tree chunks in memory).

        The next tree chunk is fetched in the background while this one is parsed, so a
        large item list on a remote bank does not stall its consumer at every chunk.
        """
        what = f"item list of checkpoint {self.id}"
        if len(self.tree_chunks) <= 1:
            for cid in self.tree_chunks:
                yield from self._parse(self._load_chunk(cid, what))
            return
        with ThreadPoolExecutor(1, thread_name_prefix="bank-items") as pool:
            upcoming = pool.submit(self._load_chunk, self.tree_chunks[0], what)
            for cid in self.tree_chunks[1:]:
                data = upcoming.result()
                upcoming = pool.submit(self._load_chunk, cid, what)
                yield from self._parse(data)
            yield from self._parse(upcoming.result())

    @staticmethod
    def _parse(data: bytes) -> Iterator[Item]:
        # One JSON array per tree chunk: a decoder call per line costs more than the line's parsing.
        lines = [line for line in data.decode("utf-8", "surrogateescape").split("\n") if line]
        for doc in json.loads("[" + ",".join(lines) + "]"):
            yield Item.from_doc(doc)

    def chunk_ids(self) -> Iterator[bytes]:
        """Every chunk id the checkpoint needs (tree chunks first, then data chunks)."""
        yield from self.tree_chunks
        for item in self.items():
            for cid, _ in item.chunks:
                yield cid

    @staticmethod
    def encode(manifest_id: str, meta: dict, stats: ManifestStats, parent_id: Optional[str], tree: List[bytes],
               origin: Optional[dict] = None) -> bytes:
        doc = {
            "version": 1,
            "id": manifest_id,
            "created": time.time(),
            "parent_id": parent_id,
            "meta": meta,
            "stats": stats.to_dict(),
            "tree": "".join(cid.hex() for cid in tree),
        }
        if origin:
            doc["origin"] = origin
        return json.dumps(doc, separators=(",", ":")).encode()
