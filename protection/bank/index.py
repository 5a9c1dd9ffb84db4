"""The bank-wide chunk index: which pack holds each chunk, at what offset.

Index objects (``index/<hex>``) are written by every writer session (after its packs are
uploaded) and merged into one compacted object by GC. Each is a sealed binary table:

    b"BKIX1\\n" | u32 npacks | npacks x 16-byte pack id | u32 nentries
    | nentries x (32-byte chunk id, u32 pack number, u32 offset, u32 length, u32 raw size, f64 deleted_at)

``deleted_at`` > 0 marks a GC tombstone (see gc.py): the chunk still exists but new
writers must not dedup against it.
"""
from __future__ import annotations

import os
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterable, List, NamedTuple, Optional, Set, Tuple

from .backends import Backend
from .crypto import Crypto
from .errors import CorruptionError

INDEX_PREFIX = "index/"
INDEX_KIND = "index"
_MAGIC = b"BKIX1\n"
_ENTRY = struct.Struct("<32sIIIId")
_PACK_ENTRY = struct.Struct("<32sIII")


class ChunkLoc(NamedTuple):
    """Where a chunk's sealed blob lives."""

    pack: str
    offset: int
    length: int
    raw_size: int


class IndexEntry(NamedTuple):
    """One row of an index object (a chunk may have several rows: duplicates, tombstones)."""

    chunk_id: bytes
    pack: str
    offset: int
    length: int
    raw_size: int
    deleted_at: float = 0.0


def encode_index(entries: Iterable[IndexEntry]) -> bytes:
    """Serialise index rows to the binary table (unsealed)."""
    pack_numbers: Dict[str, int] = {}
    rows = []
    for e in entries:
        number = pack_numbers.setdefault(e.pack, len(pack_numbers))
        rows.append(_ENTRY.pack(e.chunk_id, number, e.offset, e.length, e.raw_size, e.deleted_at))
    packs = b"".join(bytes.fromhex(p) for p in pack_numbers)
    return b"".join([_MAGIC, struct.pack("<I", len(pack_numbers)), packs, struct.pack("<I", len(rows))] + rows)


def decode_index(data: bytes, what: str) -> List[IndexEntry]:
    """Parse a binary index table."""
    try:
        if not data.startswith(_MAGIC):
            raise ValueError("bad magic")
        pos = len(_MAGIC)
        (npacks,) = struct.unpack_from("<I", data, pos)
        pos += 4
        packs = [data[pos + 16 * i: pos + 16 * (i + 1)].hex() for i in range(npacks)]
        pos += 16 * npacks
        (nentries,) = struct.unpack_from("<I", data, pos)
        pos += 4
        body = memoryview(data)[pos: pos + nentries * _ENTRY.size]
        if len(body) != nentries * _ENTRY.size:
            raise ValueError("truncated")
        return [
            IndexEntry(cid, packs[n], off, length, raw, deleted)
            for cid, n, off, length, raw, deleted in _ENTRY.iter_unpack(body)
        ]
    except (ValueError, IndexError, struct.error) as exc:
        raise CorruptionError(f"{what}: malformed index ({exc})") from None


def encode_pack_table(rows: Iterable[Tuple[bytes, int, int, int]]) -> bytes:
    """Serialise a pack's own table of contents (chunk id, offset, length, raw size)."""
    return b"".join(_PACK_ENTRY.pack(*r) for r in rows)


def decode_pack_table(data: bytes) -> List[Tuple[bytes, int, int, int]]:
    """Inverse of :func:`encode_pack_table`."""
    if len(data) % _PACK_ENTRY.size:
        raise CorruptionError("pack trailer table has a bad length")
    return list(_PACK_ENTRY.iter_unpack(data))


def seal_index_object(crypto: Crypto, entries: List[IndexEntry]) -> Tuple[str, bytes]:
    """A new index object's key and sealed content."""
    return INDEX_PREFIX + os.urandom(16).hex(), crypto.seal_meta(encode_index(entries), INDEX_KIND)


def write_index_object(backend: Backend, crypto: Crypto, entries: List[IndexEntry]) -> str:
    """Seal and store one index object; return its key."""
    key, blob = seal_index_object(crypto, entries)
    backend.put(key, blob)
    return key


def read_index_objects(
    backend: Backend, crypto: Crypto, workers: int = 4, keys: Optional[Iterable[str]] = None
) -> Tuple[List[str], List[IndexEntry]]:
    """Read every index object (or only ``keys``); return (their keys, all rows)."""
    keys = sorted(keys if keys is not None else (info.key for info in backend.list(INDEX_PREFIX)))

    def load(key: str) -> List[IndexEntry]:
        blob = backend.get(key)
        return decode_index(crypto.open_meta(blob, INDEX_KIND, f"index object {key}"), f"index object {key}")

    rows: List[IndexEntry] = []
    if len(keys) <= 1:
        for key in keys:
            rows.extend(load(key))
    else:
        with ThreadPoolExecutor(max(1, min(workers, len(keys)))) as pool:
            for part in pool.map(load, keys):
                rows.extend(part)
    return keys, rows


def build_full_lookup(rows: Iterable[IndexEntry]) -> Dict[bytes, ChunkLoc]:
    """Map chunk id -> location including tombstoned rows (live rows win); for readers and check."""
    lookup: Dict[bytes, ChunkLoc] = {}
    tomb: Dict[bytes, ChunkLoc] = {}
    for e in rows:
        loc = ChunkLoc(e.pack, e.offset, e.length, e.raw_size)
        if e.deleted_at == 0.0:
            lookup[e.chunk_id] = loc
        else:
            tomb[e.chunk_id] = loc
    for cid, loc in tomb.items():
        lookup.setdefault(cid, loc)
    return lookup


class IndexCache:
    """A reader's chunk lookup, refreshed by loading only the index objects it has not seen.

    Index objects are immutable (written once under a random key), so when every object
    the cache was built from still exists, the rows of the new ones are merged in; only
    when one has gone (GC compacted or rewrote the index) is everything read again.
    Tombstoned rows are kept for readers, but a live row always wins.
    """

    def __init__(self) -> None:
        self.lookup: Dict[bytes, ChunkLoc] = {}
        self.keys: Set[str] = set()
        self._tombstoned: Set[bytes] = set()
        self._loaded = False
        self._lock = threading.Lock()

    def refresh(self, backend: Backend, crypto: Crypto, workers: int) -> Dict[bytes, ChunkLoc]:
        """Bring the lookup up to date with the bank's index objects and return it."""
        with self._lock:
            return self._refresh(backend, crypto, workers)

    def refresh_with_live_ids(self, backend: Backend, crypto: Crypto, workers: int) -> Tuple[Dict[bytes, ChunkLoc], Set[bytes]]:
        """:meth:`refresh`, plus the ids that have a live row: what a writer may deduplicate against."""
        with self._lock:
            lookup = self._refresh(backend, crypto, workers)
            return lookup, set(lookup).difference(self._tombstoned)

    def _refresh(self, backend: Backend, crypto: Crypto, workers: int) -> Dict[bytes, ChunkLoc]:
        current = {info.key for info in backend.list(INDEX_PREFIX)}
        if not self._loaded or not self.keys <= current:
            _, rows = read_index_objects(backend, crypto, workers, keys=current)
            # A new dict: lookups handed out earlier stay consistent snapshots.
            self.lookup, self._tombstoned = {}, set()
            self._merge(rows)
            self._loaded = True
        elif current != self.keys:
            _, rows = read_index_objects(backend, crypto, workers, keys=current - self.keys)
            self._merge(rows)
        self.keys = current
        return self.lookup

    def _merge(self, rows: Iterable[IndexEntry]) -> None:
        lookup, tombstoned = self.lookup, self._tombstoned
        for e in rows:
            loc = ChunkLoc(e.pack, e.offset, e.length, e.raw_size)
            if e.deleted_at == 0.0:
                lookup[e.chunk_id] = loc
                tombstoned.discard(e.chunk_id)
            elif e.chunk_id not in lookup:
                lookup[e.chunk_id] = loc
                tombstoned.add(e.chunk_id)


def pack_key(pack_id: str) -> str:
    """Object key of a pack."""
    return f"packs/{pack_id[:2]}/{pack_id}"


def pack_id_from_key(key: str) -> Optional[str]:
    """Inverse of :func:`pack_key` (None for foreign keys)."""
    name = key.rsplit("/", 1)[-1]
    if len(name) == 32 and all(c in "0123456789abcdef" for c in name):
        return name
    return None
