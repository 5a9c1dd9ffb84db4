"""Pack objects: many sealed chunk blobs appended into one ~16 MiB object.

Layout of ``packs/<id[:2]>/<id>``::

    b"BNKPACK1" | blob 0 | blob 1 | ... | sealed trailer | u32 trailer length | b"BKPT"

The trailer is the pack's own table of contents (chunk id, offset, length, raw size),
so the bank-wide index can be rebuilt from packs alone.
"""
from __future__ import annotations

import os
import struct
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, List, Optional, Tuple

from .backends import Backend
from .crypto import Crypto
from .errors import CorruptionError
from .index import IndexEntry, decode_pack_table, encode_pack_table, pack_key

PACK_MAGIC = b"BNKPACK1"
TAIL_MAGIC = b"BKPT"
TRAILER_KIND = "pack-trailer"
DEFAULT_PACK_SIZE = 16 * 1024 * 1024


class PackWriter:
    """Accumulate sealed blobs and upload full packs in the background.

    At most ``max_pending`` packs are uploading at once, which bounds memory to about
    (max_pending + 1) x pack size. ``on_uploaded`` receives each pack's index rows after
    its object is durably stored; only then may an index object mention them.
    """

    def __init__(
        self,
        backend: Backend,
        crypto: Crypto,
        target_size: int = DEFAULT_PACK_SIZE,
        max_pending: int = 2,
        on_uploaded: Optional[Callable[[List[IndexEntry]], None]] = None,
    ) -> None:
        self.backend = backend
        self.crypto = crypto
        self.target_size = target_size
        self.on_uploaded = on_uploaded
        self._blobs: List[bytes] = []
        self._rows: List[Tuple[bytes, int, int, int]] = []
        self._size = len(PACK_MAGIC)
        self._slots = threading.BoundedSemaphore(max_pending)
        self._uploader = ThreadPoolExecutor(max_pending, thread_name_prefix="bank-upload")
        self._pending: List[Future] = []
        self.packs_written = 0
        self.bytes_written = 0

    def add(self, chunk_id: bytes, blob: bytes, raw_size: int) -> None:
        """Append one sealed blob; uploads the pack when it reaches the target size."""
        self._rows.append((chunk_id, self._size, len(blob), raw_size))
        self._blobs.append(blob)
        self._size += len(blob)
        if self._size >= self.target_size:
            self.flush()

    def flush(self) -> None:
        """Start uploading the current pack (if any)."""
        if not self._rows:
            return
        pack_id = os.urandom(16).hex()
        trailer = self.crypto.seal_meta(encode_pack_table(self._rows), TRAILER_KIND)
        parts = [PACK_MAGIC, *self._blobs, trailer, struct.pack("<I", len(trailer)), TAIL_MAGIC]
        rows = [IndexEntry(cid, pack_id, off, length, raw) for cid, off, length, raw in self._rows]
        size = self._size + len(trailer) + 8
        self._blobs, self._rows, self._size = [], [], len(PACK_MAGIC)
        self._raise_failed()
        self._slots.acquire()  # back-pressure: wait while max_pending uploads are running
        try:
            fut = self._uploader.submit(self._upload, pack_id, parts, rows, size)
        except BaseException:
            self._slots.release()
            raise
        self._pending.append(fut)

    def _upload(self, pack_id: str, parts: list, rows: List[IndexEntry], size: int) -> None:
        try:
            self.backend.put(pack_key(pack_id), parts)
            if self.on_uploaded:
                self.on_uploaded(rows)
            self.packs_written += 1
            self.bytes_written += size
        finally:
            self._slots.release()

    def _raise_failed(self) -> None:
        still = []
        for fut in self._pending:
            if fut.done():
                fut.result()  # re-raises an upload error in the writer's thread
            else:
                still.append(fut)
        self._pending = still

    def wait(self) -> None:
        """Flush and block until every pack is uploaded (re-raising upload errors)."""
        self.flush()
        for fut in self._pending:
            fut.result()
        self._pending = []

    def close(self) -> None:
        """Stop the uploader thread (without flushing)."""
        self._uploader.shutdown(wait=True, cancel_futures=True)


def read_pack_table(backend: Backend, crypto: Crypto, pack_id: str, size: Optional[int] = None) -> List[IndexEntry]:
    """Read a pack's trailer and return its rows (used to rebuild the index)."""
    key = pack_key(pack_id)
    if size is None:
        data = backend.get(key)
        tail = data[-8:]
    else:
        data = None
        tail = backend.get_range(key, size - 8, 8)
    if len(tail) != 8 or tail[4:] != TAIL_MAGIC:
        raise CorruptionError(f"pack {pack_id}: missing trailer (truncated?)")
    (tlen,) = struct.unpack("<I", tail[:4])
    if data is not None:
        size = len(data)
        trailer = data[size - 8 - tlen: size - 8]
    else:
        trailer = backend.get_range(key, size - 8 - tlen, tlen)
    table = decode_pack_table(crypto.open_meta(trailer, TRAILER_KIND, f"pack {pack_id} trailer"))
    return [IndexEntry(cid, pack_id, off, length, raw) for cid, off, length, raw in table]
