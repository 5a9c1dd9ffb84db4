"""Writer sessions: chunk, dedup, compress, encrypt and pack streams and directory trees.

Pipeline: the calling thread walks the tree, reads and chunks large files (pyfastcdc drops
the GIL while cutting), a thread pool hashes, compresses and encrypts (blake3, zstd and, via
:mod:`.openssl_aead`, ChaCha20 drop the GIL) and opens, reads and seals small files itself,
many per task, and a small uploader pool writes finished packs. The calling thread consumes
results in order, so item chunk lists and items keep their order and memory stays bounded by
the in-flight window (``3 x workers`` tasks, ``8 MiB x workers`` of plaintext) plus at most
three packs.
"""
from __future__ import annotations

import os
import stat as stat_mod
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Deque, Dict, Iterator, List, Optional, Set, Tuple

from .errors import BankError
from .index import IndexEntry, seal_index_object
from .manifest import (
    MANIFEST_KIND, TYPE_DIR, TYPE_FILE, TYPE_STREAM, TYPE_SYMLINK, Item, Manifest, ManifestStats,
    TreeBuffer, manifest_key, validate_manifest_id,
)
from .packs import PackWriter


@dataclass
class Progress:
    """Passed to ``on_progress`` callbacks. Totals are None when unknown (tree walks)."""

    bytes_done: int
    bytes_total: Optional[int]
    items_done: int
    items_total: Optional[int]


ProgressCallback = Callable[[Progress], None]


_MAX_QUEUED_OPS = 4096
# Chunks below this size are sealed in batches: one pool task per ~1 MiB of small files instead of one
# per file, because every hand-off between threads costs a wake-up (tens of microseconds on a VM), which
# made a tree of small files run at one file per 0.1 ms with the sealing threads mostly asleep.
_BATCH_CHUNK_LIMIT = 64 * 1024
_BATCH_BYTES = 1024 * 1024
_BATCH_ITEMS = 256
# Raw bytes sealing at once per worker; with 3 tasks per worker it bounds the in-flight window.
_WINDOW_BYTES_PER_WORKER = 8 * 1024 * 1024


_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)


def _open_for_reading(path: str) -> int:
    try:
        return os.open(path, _READ_FLAGS | getattr(os, "O_NOATIME", 0))
    except PermissionError:
        # O_NOATIME is refused on files of another owner; read them without it.
        return os.open(path, _READ_FLAGS)


class _Call:
    """Progress accounting of one add_tree/add_stream call."""

    def __init__(self, cb: Optional[ProgressCallback], bytes_total: Optional[int], items_total: Optional[int]) -> None:
        self.cb = cb
        self.bytes_done = 0
        self.items_done = 0
        self.bytes_total = bytes_total
        self.items_total = items_total

    def report(self) -> None:
        if self.cb:
            self.cb(Progress(self.bytes_done, self.bytes_total, self.items_done, self.items_total))


class Writer:
    """A writer session producing one checkpoint.

    Use as a context manager; nothing is visible until :meth:`commit` writes the manifest.
    Leaving the block without commit (or on error) keeps uploaded packs (indexed, so a
    retry deduplicates against them) but creates no checkpoint.
    """

    def __init__(self, bank, manifest_id: str, parent_id: Optional[str] = None, reuse_parent_files: bool = True) -> None:
        self.bank = bank
        self.manifest_id = validate_manifest_id(manifest_id)
        self.parent_id = parent_id
        if bank.manifest_exists(manifest_id):
            raise BankError(f"checkpoint {manifest_id} already exists in the bank")
        self.stats = ManifestStats()
        self._closed = False
        self._lease = bank.take_lease("writer")
        try:
            # Loaded after the lease: GC either saw our lease or has finished (locks.py). The bank's
            # index cache reads only the index objects it has not seen, and the parent's item list
            # below is located through the same refreshed lookup.
            self._known: Set[bytes] = bank.load_live_chunk_ids()
            self._parent: Optional[Dict[str, Item]] = (
                self._load_parent(parent_id) if parent_id and reuse_parent_files else None
            )
        except BaseException:
            self._lease.release()
            raise
        self._crypto = bank.crypto
        self._chunker = bank.new_chunker()
        self._small_limit = bank.chunker_params.min_size
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(bank.workers, thread_name_prefix="bank-seal")
        self._uploaded: List[IndexEntry] = []
        self._packs_since_index = 0
        self._packer = PackWriter(bank.backend, bank.crypto, bank.pack_size, on_uploaded=self._on_pack_uploaded)
        self._ops: Deque[list] = deque()
        # Sealing tasks submitted (or, for the open batch, queued) and not yet consumed, and their raw bytes.
        self._tasks_in_flight = 0
        self._bytes_in_flight = 0
        self._max_tasks = bank.workers * 3
        self._max_bytes = bank.workers * _WINDOW_BYTES_PER_WORKER
        self._batch: Optional[list] = None  # the open batch op of small chunks, not yet submitted
        self._regrown: List[tuple] = []  # small files found larger when read: (path, stored, item, call)
        self._tree_ids: List[bytes] = []
        self._tree = TreeBuffer(self._emit_tree_chunk)
        self.new_tree_chunks = 0
        self._index_bytes = 0
        self.bytes_sent = 0  # stored bytes this session wrote (packs, index objects, manifest), set by commit
        self._silent = _Call(None, None, None)

    # ------------------------------------------------------------ context manager
    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._closed:
            self.abort()

    # ------------------------------------------------------------ parent
    def _load_parent(self, parent_id: str) -> Dict[str, Item]:
        parent = self.bank.read_manifest(parent_id)
        found: Dict[str, Item] = {}
        for item in parent.items():
            if item.type == TYPE_FILE and item.chunks:
                if all(cid in self._known for cid, _ in item.chunks):
                    found[item.path] = item
        return found

    # ------------------------------------------------------------ chunk pipeline
    # The op queue holds, in submission order: ["chunk", future, item, call], ["batch", future or None,
    # entries, raw bytes], ["tree", future], ["known", cid, size, item] and ["end", item, call]. A batch's
    # entries are ("data", bytes, item, call), ("file", path, stored, size, item, call): a small file its
    # worker opens and reads, recorded when consumed, and ("end", item, call). Results are consumed from the
    # front only, and while a batch is open items end inside it, so chunk lists and item order stay in
    # walk order; the open batch is submitted before any other chunk op is queued behind it.
    def _seal(self, data: bytes) -> Tuple[bytes, int, Optional[bytes]]:
        cid = self._crypto.chunk_id(data)
        with self._lock:
            if cid in self._known:
                return cid, len(data), None
            # Claimed before sealing so a concurrent duplicate is not stored twice.
            self._known.add(cid)
        return cid, len(data), self._crypto.seal_chunk(cid, data)

    def _seal_batch(self, entries: List[tuple]) -> List[object]:
        out: List[object] = []
        for entry in entries:
            kind = entry[0]
            if kind == "data":
                out.append(self._seal(entry[1]))
            elif kind == "file":
                out.append(self._read_and_seal(entry[1], entry[3]))
            else:
                out.append(None)
        return out

    def _read_and_seal(self, path: str, size: int) -> tuple:
        """A small file's one chunk: ("ok", sealed or None when empty), ("skip", error) when it cannot be
        opened, ("partial", error) on a read error, or ("grew",) when it is larger than its stat said."""
        try:
            fd = _open_for_reading(path)
        except OSError as exc:
            return ("skip", str(exc))
        try:
            # One read of the size stat gave, plus a byte to notice a file that grew since.
            data = os.read(fd, size + 1)
        except OSError as exc:
            return ("partial", str(exc))
        finally:
            os.close(fd)
        if len(data) > size:
            return ("grew",)
        return ("ok", self._seal(data) if data else None)

    def _open_batch(self) -> list:
        batch = self._batch
        if batch is None:
            batch = self._batch = ["batch", None, [], 0]
            self._ops.append(batch)
            self._tasks_in_flight += 1
        return batch

    def _add_to_batch(self, entry: tuple, size: int) -> None:
        batch = self._open_batch()
        batch[2].append(entry)
        batch[3] += size
        self._bytes_in_flight += size
        if batch[3] >= _BATCH_BYTES or len(batch[2]) >= _BATCH_ITEMS:
            self._submit_batch()
        self._collect()

    def _submit_chunk(self, data: bytes, item: Item, call: _Call) -> None:
        if len(data) < _BATCH_CHUNK_LIMIT:
            self._add_to_batch(("data", data, item, call), len(data))
            return
        # Later ops must not overtake chunks already in the open batch (an item's chunks stay in order).
        self._submit_batch()
        self._ops.append(["chunk", self._pool.submit(self._seal, data), item, call])
        self._tasks_in_flight += 1
        self._bytes_in_flight += len(data)
        self._collect()

    def _submit_batch(self) -> None:
        batch, self._batch = self._batch, None
        if batch is not None:
            batch[1] = self._pool.submit(self._seal_batch, batch[2])

    def _emit_tree_chunk(self, data: bytes) -> None:
        self._ops.append(["tree", self._pool.submit(self._seal, data)])
        self._tasks_in_flight += 1
        self._bytes_in_flight += len(data)

    def _finish_item(self, item: Item, call: _Call) -> None:
        if self._batch is not None:
            # Recorded after the small files queued before it, in walk order.
            self._batch[2].append(("end", item, call))
            return
        if not self._ops and not self._tasks_in_flight:  # nothing before it: an unchanged file of an incremental
            self._end(item, call)
            return
        self._ops.append(["end", item, call])
        if not self._tasks_in_flight:
            self._drain(0)

    def _store(self, cid: bytes, size: int, blob: Optional[bytes]) -> None:
        if blob is not None:
            self.stats.new_chunks += 1
            self.stats.new_bytes += size
            self.stats.new_stored_bytes += len(blob)
            self._packer.add(cid, blob, size)
            if self._packs_since_index >= self.bank.index_every_packs:
                self._write_index()

    def _collect(self) -> None:
        """Consume finished results without waiting, then wait only while the window is full."""
        ops = self._ops
        while ops:
            op = ops[0]
            kind = op[0]
            if kind in ("chunk", "tree"):
                if not op[1].done():
                    break
            elif kind == "batch":
                if op[1] is None or not op[1].done():
                    break
            self._consume(ops.popleft())
        if self._tasks_in_flight > self._max_tasks or self._bytes_in_flight > self._max_bytes:
            self._drain(self._max_tasks, self._max_bytes)

    def _drain(self, limit: int, byte_limit: int = 0) -> None:
        """Consume results in order until at most ``limit`` tasks and ``byte_limit`` bytes are in flight
        (and every op that needs no sealing at the front), waiting for sealing as needed."""
        ops = self._ops
        while ops and (self._tasks_in_flight > limit or self._bytes_in_flight > byte_limit
                       or ops[0][0] in ("end", "known")):
            if ops[0] is self._batch:
                self._submit_batch()
            self._consume(ops.popleft())

    def _consume(self, op: list) -> None:
        kind = op[0]
        if kind == "known":
            _, cid, size, item = op
            item.chunks.append((cid, size))
            self.stats.bytes_reused += size
        elif kind == "chunk":
            _, fut, item, call = op
            cid, size, blob = fut.result()
            self._tasks_in_flight -= 1
            self._bytes_in_flight -= size
            self._stored_chunk(cid, size, blob, item, call)
        elif kind == "batch":
            results = op[1].result()
            self._tasks_in_flight -= 1
            self._bytes_in_flight -= op[3]
            for result, entry in zip(results, op[2]):
                if entry[0] == "data":
                    self._stored_chunk(*result, entry[2], entry[3])
                elif entry[0] == "file":
                    self._consume_small_file(result, *entry[1:])
                else:
                    self._end(entry[1], entry[2])
        elif kind == "tree":
            cid, size, blob = op[1].result()
            self._tasks_in_flight -= 1
            self._bytes_in_flight -= size
            self._tree_ids.append(cid)
            self.new_tree_chunks += blob is not None
            self._store(cid, size, blob)
        else:
            self._end(op[1], op[2])

    def _end(self, item: Item, call: _Call) -> None:
        self._record(item)
        call.items_done += 1
        call.report()

    def _consume_small_file(self, result: tuple, path: str, stored: str, size: int, item: Item, call: _Call) -> None:
        status = result[0]
        if status == "skip":
            self._warn(f"{stored}: {result[1]}")
            return
        if status == "grew":
            # Read again on the calling thread, chunked like a large file, once the walk can take it.
            self._regrown.append((path, stored, item, call))
            return
        if status == "partial":
            # The item is recorded with what was read (nothing); the warning marks it as partial.
            self._warn(f"{stored}: read error: {result[1]}")
        elif result[1] is not None:
            self._stored_chunk(*result[1], item, call)
        self._end(item, call)

    def _stored_chunk(self, cid: bytes, size: int, blob: Optional[bytes], item: Item, call: _Call) -> None:
        item.chunks.append((cid, size))
        self._store(cid, size, blob)
        self.stats.bytes_read += size
        call.bytes_done += size
        call.report()

    def _record(self, item: Item) -> None:
        counter = {TYPE_FILE: "files", TYPE_DIR: "dirs", TYPE_SYMLINK: "symlinks", TYPE_STREAM: "streams"}[item.type]
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        if item.type in (TYPE_FILE, TYPE_STREAM):
            item.size = sum(size for _, size in item.chunks)
            self.stats.bytes += item.size
        self._tree.add(item)

    def _on_pack_uploaded(self, rows: List[IndexEntry]) -> None:
        # Runs in the uploader thread: only durably stored packs may enter an index object.
        with self._lock:
            self._uploaded.extend(rows)
            self._packs_since_index += 1

    def _write_index(self) -> None:
        with self._lock:
            rows, self._uploaded = self._uploaded, []
            self._packs_since_index = 0
        if rows:
            key, blob = seal_index_object(self.bank.crypto, rows)
            self.bank.backend.put(key, blob)
            self._index_bytes += len(blob)

    def _check_open(self) -> None:
        if self._closed:
            raise BankError("writer session is closed")

    # ------------------------------------------------------------ public API
    def add_stream(self, name: str, stream, meta: Optional[dict] = None,
                   on_progress: Optional[ProgressCallback] = None, size: Optional[int] = None) -> Item:
        """Store a non-file blob (a file object or an iterable of bytes) as item ``name``."""
        self._check_open()
        if size is None and hasattr(stream, "fileno"):
            try:
                st = os.fstat(stream.fileno())
                size = st.st_size if stat_mod.S_ISREG(st.st_mode) else None
            except (OSError, ValueError):
                size = None
        call = _Call(on_progress, size, 1)
        item = Item(path=name, type=TYPE_STREAM, mode=0o600, mtime_ns=time.time_ns(), meta=meta or None)
        for view in self._chunker.cut_stream(stream):
            self._submit_chunk(bytes(view), item, call)
        self._finish_item(item, call)
        self._drain(0)
        return item

    def add_reused(self, name: str, previous: Item, meta: Optional[dict] = None) -> Optional[Item]:
        """Store stream item ``name`` with the chunks of ``previous`` (an item of an earlier checkpoint), reading nothing.

        For callers that know their source is unchanged (an S3 object with the same ETag and size).
        Returns None, storing nothing, when a chunk of ``previous`` is no longer in the bank; the
        caller then reads the data again with :meth:`add_stream`.
        """
        self._check_open()
        if not all(cid in self._known for cid, _ in previous.chunks):
            return None
        size = sum(size for _, size in previous.chunks)
        item = Item(path=name, type=TYPE_STREAM, mode=0o600, mtime_ns=time.time_ns(), meta=meta or None,
                    chunks=list(previous.chunks))
        self.stats.bytes_reused += size
        call = _Call(None, size, 1)
        call.bytes_done = size
        self._finish_item(item, call)
        self._drain(0)
        return item

    def parent_items(self, prefix: str) -> Iterator[Item]:
        """The parent checkpoint's items under ``prefix`` (nothing without a parent)."""
        if not self.parent_id:
            return
        prefix = prefix.strip("/")
        for item in self.bank.read_manifest(self.parent_id).items():
            if item.path.startswith(prefix + "/"):
                yield item

    def add_tree(self, src: str, prefix: str = "", on_progress: Optional[ProgressCallback] = None) -> None:
        """Walk ``src`` (not following symlinks) and store every entry under ``prefix``.

        With a parent checkpoint, files whose path, size, mtime and type match are not read:
        their chunk lists are reused.
        """
        self._check_open()
        src = os.path.abspath(src)
        root_st = os.lstat(src)
        if not stat_mod.S_ISDIR(root_st.st_mode):
            raise BankError(f"{src} is not a directory")
        prefix = prefix.strip("/")
        call = _Call(on_progress, None, None)
        if prefix:
            self._finish_item(self._meta_item(prefix, TYPE_DIR, root_st), call)
        for path, stored, st in self._walk(src, prefix):
            mode = st.st_mode
            if stat_mod.S_ISDIR(mode):
                self._finish_item(self._meta_item(stored, TYPE_DIR, st), call)
            elif stat_mod.S_ISLNK(mode):
                item = self._meta_item(stored, TYPE_SYMLINK, st)
                try:
                    item.target = os.readlink(path)
                except OSError as exc:
                    self._warn(f"{stored}: {exc}")
                    continue
                self._finish_item(item, call)
            elif stat_mod.S_ISREG(mode):
                self._add_file(path, stored, st, call)
            else:
                self.stats.skipped += 1
            if self._regrown:
                self._add_regrown_files()
        self._drain(0)
        while self._regrown:
            self._add_regrown_files()
            self._drain(0)

    def _warn(self, message: str) -> None:
        self.stats.warnings.append(message)

    @staticmethod
    def _meta_item(stored: str, kind: str, st: os.stat_result) -> Item:
        return Item(path=stored, type=kind, mode=stat_mod.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                    mtime_ns=st.st_mtime_ns)

    def _walk(self, src: str, prefix: str) -> Iterator[Tuple[str, str, os.stat_result]]:
        # Depth-first with sorted names: a stable order keeps tree chunks deduplicable.
        def entries(directory: str, stored_dir: str):
            try:
                with os.scandir(directory) as it:
                    found = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                self._warn(f"{stored_dir or '.'}: {exc}")
                return iter(())
            return ((e, f"{stored_dir}/{e.name}" if stored_dir else e.name) for e in found)

        stack = [entries(src, prefix)]
        while stack:
            try:
                entry, stored = next(stack[-1])
            except StopIteration:
                stack.pop()
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                self._warn(f"{stored}: {exc}")
                continue
            yield entry.path, stored, st
            if stat_mod.S_ISDIR(st.st_mode):
                stack.append(entries(entry.path, stored))

    def _add_file(self, path: str, stored: str, st: os.stat_result, call: _Call) -> None:
        item = self._meta_item(stored, TYPE_FILE, st)
        previous = self._parent.get(stored) if self._parent else None
        if previous is not None and previous.size == st.st_size and previous.mtime_ns == st.st_mtime_ns:
            item.chunks = list(previous.chunks)
            self.stats.bytes_reused += st.st_size
            call.bytes_done += st.st_size
            self._finish_item(item, call)
            return
        if st.st_size <= self._small_limit:
            # One chunk at most: a pool worker opens, reads and seals it, with the batch it is in.
            self._add_to_batch(("file", path, stored, st.st_size, item, call), st.st_size)
            return
        self._add_large_file(path, stored, item, call)

    def _add_large_file(self, path: str, stored: str, item: Item, call: _Call) -> None:
        try:
            fd = _open_for_reading(path)
        except OSError as exc:
            self._warn(f"{stored}: {exc}")
            return
        with open(fd, "rb", buffering=0, closefd=True) as f:
            try:
                # The chunker reads straight into its own buffer (readinto), sparing a copy per read.
                for view in self._chunker.cut_stream(f):
                    self._submit_chunk(bytes(view), item, call)
            except OSError as exc:
                # The item is recorded with what was read; the warning marks it as partial.
                self._warn(f"{stored}: read error: {exc}")
        self._finish_item(item, call)

    def _add_regrown_files(self) -> None:
        """Store the small files that had grown when their worker read them, like large ones."""
        while self._regrown:
            path, stored, item, call = self._regrown.pop(0)
            self._add_large_file(path, stored, item, call)

    def has_chunk(self, chunk_id: bytes) -> bool:
        """Whether the bank already holds a live chunk with this id (new chunks are not stored twice)."""
        with self._lock:
            return chunk_id in self._known

    def add_chunk(self, data, item: Item) -> None:
        """Append one already-cut chunk of plaintext to ``item`` (stored unless the bank has it)."""
        self._check_open()
        self._submit_chunk(bytes(data), item, self._silent)

    def add_known_chunk(self, chunk_id: bytes, size: int, item: Item) -> None:
        """Append a chunk the bank holds (see :meth:`has_chunk`) to ``item`` without its data."""
        self._check_open()
        self._submit_batch()
        self._ops.append(("known", chunk_id, size, item))
        if len(self._ops) > _MAX_QUEUED_OPS:  # a long run of known chunks must not queue without bound
            self._drain(0)

    def add_item(self, item: Item) -> None:
        """Record ``item`` once the chunks added for it before are stored (dirs and links have none)."""
        self._check_open()
        self._finish_item(item, self._silent)

    def commit(self, meta: Optional[dict] = None, origin: Optional[dict] = None) -> Manifest:
        """Flush everything, then write the manifest atomically. Returns the committed manifest.

        ``origin`` records where a copied checkpoint came from (see :mod:`.transfer`).
        """
        self._check_open()
        try:
            self._drain(0)
            self._tree.flush()
            self._drain(0)
            self._packer.wait()
            self._write_index()
            self._lease.check()
            data = Manifest.encode(self.manifest_id, meta or {}, self.stats, self.parent_id, self._tree_ids, origin)
            sealed = self._crypto.seal_meta(data, MANIFEST_KIND)
            self.bank.backend.put(manifest_key(self.manifest_id), sealed)
            self.bytes_sent = self._packer.bytes_written + self._index_bytes + len(sealed)
        except BaseException:
            self.abort()
            raise
        self._shutdown()
        return self.bank.read_manifest(self.manifest_id)

    def abort(self) -> None:
        """Stop without a checkpoint; uploaded packs get indexed so a retry dedups against them."""
        if self._closed:
            return
        try:
            for op in self._ops:
                if op[0] in ("chunk", "tree", "batch") and op[1] is not None:
                    op[1].cancel()
            self._ops.clear()
            self._batch = None
            try:
                self._packer.wait()
            except Exception:
                pass
            try:
                self._write_index()
            except Exception:
                pass
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._packer.close()
        self._lease.release()
