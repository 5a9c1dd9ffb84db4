"""Reading checkpoints back: restore a tree, stream one item.

Chunk fetches are planned in order and coalesced: consecutive chunks stored close
together in the same pack are read with one ranged GET, then verified (decrypt,
decompress, re-hash) on a thread pool. ``fetch_ordered`` hands the verified chunks back
in order (streaming one item, verify, copy); a tree restore (``_ParallelRestore``) lets
the workers write them straight into their files, many files at once.
"""
from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Set, Tuple

from .direct_io import DirectFile, pwrite_sparse
from .errors import BankError, CorruptionError, ObjectNotFound
from .index import ChunkLoc, pack_key
from .manifest import TYPE_DIR, TYPE_FILE, TYPE_STREAM, TYPE_SYMLINK, Item
from .safe_fs import RestoreReport, safe_parts as _safe_parts  # noqa: F401 - RestoreReport is re-exported
from .safe_fs import TreeRestorer as _TreeRestorer
from .writer import Progress

BATCH_RAW_LIMIT = 8 * 1024 * 1024
BATCH_GAP_LIMIT = 512 * 1024
BATCH_MAX_CHUNKS = 2048
# Each restore worker holds one batch and its decoded chunks: 4 MiB keeps peak RSS ~57 MiB from
# 256 MiB to 1 GiB restored (8 MiB: 61 -> 75 MiB) at the same speed on a local bank.
RESTORE_BATCH_RAW_LIMIT = 4 * 1024 * 1024


class _Batch:
    __slots__ = ("pack", "start", "end", "raw", "chunks", "by_offset", "future")

    def __init__(self, pack: str, cid: bytes, loc: ChunkLoc) -> None:
        self.pack = pack
        self.start = loc.offset
        self.end = loc.offset + loc.length
        self.raw = loc.raw_size
        self.chunks: List[Tuple[bytes, ChunkLoc]] = [(cid, loc)]
        self.by_offset: Dict[int, int] = {loc.offset: 0}
        self.future: Optional[Future] = None

    def add(self, cid: bytes, loc: ChunkLoc) -> Optional[int]:
        """Return the index of the chunk in this batch, or None when it does not fit."""
        if loc.pack != self.pack:
            return None
        known = self.by_offset.get(loc.offset)
        if known is not None:
            return known
        if loc.offset < self.end or loc.offset - self.end > BATCH_GAP_LIMIT:
            return None
        if self.raw + loc.raw_size > BATCH_RAW_LIMIT or len(self.chunks) >= BATCH_MAX_CHUNKS:
            return None
        self.end = loc.offset + loc.length
        self.raw += loc.raw_size
        self.by_offset[loc.offset] = len(self.chunks)
        self.chunks.append((cid, loc))
        return len(self.chunks) - 1


def _fetch(bank, batch: _Batch) -> List[Any]:
    """Read a batch's byte range and open each chunk; failures become exception values."""
    try:
        data = bank.backend.get_range(pack_key(batch.pack), batch.start, batch.end - batch.start)
    except ObjectNotFound:
        return [CorruptionError(f"pack {batch.pack} is missing")] * len(batch.chunks)
    out: List[Any] = []
    view = memoryview(data)
    for cid, loc in batch.chunks:
        rel = loc.offset - batch.start
        piece = view[rel: rel + loc.length]
        if len(piece) != loc.length:
            out.append(CorruptionError(f"pack {batch.pack} is truncated (chunk {cid.hex()[:16]})"))
            continue
        try:
            out.append(bank.crypto.open_chunk(cid, piece))
        except CorruptionError as exc:
            out.append(CorruptionError(f"pack {batch.pack}: {exc}"))
    return out


def fetch_ordered(bank, events: Iterable[tuple], lookup: Dict[bytes, ChunkLoc],
                  pool: ThreadPoolExecutor, window: int) -> Iterator[tuple]:
    """Turn ("chunk", tag, cid) / ("mark", tag) events into ("chunk", tag, data|exception) / ("mark", tag).

    Order is preserved; at most ``window`` batches are fetched ahead.
    """
    queue: Deque[tuple] = deque()
    pending: Deque[_Batch] = deque()
    current: Optional[_Batch] = None

    def submit() -> None:
        nonlocal current
        if current is not None:
            current.future = pool.submit(_fetch, bank, current)
            pending.append(current)
            current = None

    def pop_one() -> tuple:
        entry = queue.popleft()
        if entry[0] == "mark":
            return entry
        if entry[0] == "error":
            return ("chunk", entry[1], entry[2])
        _, tag, batch, idx = entry
        results = batch.future.result()
        if idx == len(batch.chunks) - 1 and pending and pending[0] is batch:
            pending.popleft()
        return ("chunk", tag, results[idx])

    for event in events:
        if event[0] == "mark":
            queue.append(event)
        else:
            _, tag, cid = event
            loc = lookup.get(cid)
            if loc is None:
                queue.append(("error", tag, CorruptionError(f"chunk {cid.hex()[:16]} is missing from the index")))
            else:
                idx = current.add(cid, loc) if current is not None else None
                if idx is None:
                    submit()
                    current = _Batch(loc.pack, cid, loc)
                    idx = 0
                queue.append(("data", tag, current, idx))
        while len(pending) > window:
            yield pop_one()
        # Without a data backlog, items with no chunks (dirs, links) need not wait.
        while queue and queue[0][0] in ("mark", "error") :
            yield pop_one()
    submit()
    while queue:
        yield pop_one()


# Files from this size on are written with O_DIRECT (see direct_io) where the destination takes it.
DIRECT_RESTORE_MIN = 1024 * 1024


class _FileJob:
    """One file (or stream) being restored: opened by the first chunk to arrive, closed by the last."""

    __slots__ = ("stored", "item", "pending", "fd", "lock", "size", "direct", "mode", "mode_final", "holes")

    def __init__(self, stored: str, item: Item) -> None:
        self.stored = stored
        self.item = item
        self.pending = len(item.chunks)
        self.fd = -1
        self.lock = threading.Lock()
        self.size = sum(size for _, size in item.chunks)
        self.direct: Optional[DirectFile] = None
        self.mode, self.mode_final = 0o600, False  # what the file is created with (TreeRestorer.creation_mode)
        self.holes = False  # a zero block was skipped: the file may end short of its size


class _RestoreBatch:
    """Chunks stored close together in one pack, fetched with one ranged read; each chunk has its targets."""

    __slots__ = ("pack", "start", "end", "raw", "chunks", "by_offset")

    def __init__(self, pack: str, loc: ChunkLoc) -> None:
        self.pack = pack
        self.start = loc.offset
        self.end = loc.offset
        self.raw = 0
        self.chunks: List[Tuple[bytes, ChunkLoc, List[Tuple[_FileJob, int]]]] = []
        self.by_offset: Dict[int, int] = {}

    def add(self, cid: bytes, loc: ChunkLoc, job: _FileJob, file_offset: int) -> bool:
        """Add one chunk occurrence; False when it belongs in another batch."""
        if loc.pack != self.pack:
            return False
        known = self.by_offset.get(loc.offset)
        if known is not None:
            self.chunks[known][2].append((job, file_offset))
            return True
        if self.chunks and (loc.offset < self.end or loc.offset - self.end > BATCH_GAP_LIMIT
                            or self.raw + loc.raw_size > RESTORE_BATCH_RAW_LIMIT
                            or len(self.chunks) >= BATCH_MAX_CHUNKS):
            return False
        self.end = loc.offset + loc.length
        self.raw += loc.raw_size
        self.by_offset[loc.offset] = len(self.chunks)
        self.chunks.append((cid, loc, [(job, file_offset)]))
        return True


class _ParallelRestore:
    """Fetch, verify and write file data on a thread pool, many files at once.

    The calling thread only walks the item list and plans batches; workers read a batch,
    open its chunks (decrypt, decompress, re-hash: all release the GIL) and ``pwrite`` each
    chunk at its offset in its file. The first chunk of a file to arrive creates the file
    and the last one sets its metadata and closes it, so file creation (a metadata-heavy
    system call) runs on every worker instead of serializing in one thread. At most
    ``window`` batches are in flight, which bounds memory whatever the checkpoint's size.
    """

    def __init__(self, bank, restorer: "_TreeRestorer", lookup, manifest_id: str, threads: int, window: int,
                 on_batch: Optional[Callable[[], None]] = None) -> None:
        self.bank = bank
        self.on_batch = on_batch
        self.restorer = restorer
        self.lookup = lookup
        self.manifest_id = manifest_id
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="bank-restore")
        self.slots = threading.BoundedSemaphore(window)
        self.lock = threading.Lock()
        self.open_jobs: Set[_FileJob] = set()
        self.current: Optional[_RestoreBatch] = None
        self.error: Optional[BaseException] = None
        self.bytes_done = 0
        self.files_done = 0

    # -------------------------------------------------------------- planning (calling thread)
    def add_file(self, stored: str, item: Item) -> None:
        _safe_parts(stored)  # refuse a bad name before any worker touches the disk
        job = _FileJob(stored, item)
        if not item.chunks:
            self._submit(self._run_empty, job)
            return
        offset = 0
        for cid, size in item.chunks:
            loc = self.lookup.get(cid)
            if loc is None:
                raise CorruptionError(f"cannot restore {item.path!r} from checkpoint {self.manifest_id}: "
                                      f"chunk {cid.hex()[:16]} is missing from the index")
            if self.current is None or not self.current.add(cid, loc, job, offset):
                self.flush()
                self.current = _RestoreBatch(loc.pack, loc)
                self.current.add(cid, loc, job, offset)
            offset += size

    def flush(self) -> None:
        if self.current is not None:
            batch, self.current = self.current, None
            self._submit(self._run_batch, batch)

    def _submit(self, fn, arg) -> None:
        self.raise_error()
        self.slots.acquire()  # back-pressure: at most ``window`` batches fetched ahead
        try:
            self.pool.submit(self._guarded, fn, arg)
        except BaseException:
            self.slots.release()
            raise
        if self.on_batch:  # progress of a large file shows while it is being written
            self.on_batch()

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def finish(self) -> None:
        """Submit the last batch and wait for every write; re-raise the first worker error."""
        self.flush()
        self.pool.shutdown(wait=True)
        self.raise_error()

    def abort(self) -> None:
        """Stop after an error: let running batches end, then close what they left open."""
        if self.error is None:
            self.error = BankError("restore aborted")
        self.pool.shutdown(wait=True, cancel_futures=True)
        for job in list(self.open_jobs):
            os.close(job.fd)
        self.open_jobs.clear()

    # -------------------------------------------------------------- workers
    def _guarded(self, fn, arg) -> None:
        try:
            if self.error is None:
                fn(arg)
        except BaseException as exc:  # handed to the calling thread, which raises it
            with self.lock:
                if self.error is None:
                    self.error = exc
        finally:
            self.slots.release()

    def _run_empty(self, job: _FileJob) -> None:
        job.mode, job.mode_final = self.restorer.creation_mode(job.item)
        self._close(job, self.restorer.open_file(job.stored, job.mode))

    def _run_batch(self, batch: _RestoreBatch) -> None:
        def fail(targets, reason) -> CorruptionError:
            return CorruptionError(f"cannot restore {targets[0][0].item.path!r} from checkpoint "
                                   f"{self.manifest_id}: {reason}")

        try:
            data = self.bank.backend.get_range_view(pack_key(batch.pack), batch.start, batch.end - batch.start)
        except ObjectNotFound:
            raise fail(batch.chunks[0][2], f"pack {batch.pack} is missing") from None
        view = memoryview(data)
        for cid, loc, targets in batch.chunks:
            rel = loc.offset - batch.start
            piece = view[rel: rel + loc.length]
            if len(piece) != loc.length:
                raise fail(targets, f"pack {batch.pack} is truncated (chunk {cid.hex()[:16]})")
            try:
                plain = self.bank.crypto.open_chunk(cid, piece, as_view=True)
            except CorruptionError as exc:
                raise fail(targets, f"pack {batch.pack}: {exc}") from None
            for job, offset in targets:
                self._write(job, plain, offset)
            del plain

    def _write(self, job: _FileJob, data, offset: int) -> None:
        if job.pending == 1 and job.fd < 0 and job.size < DIRECT_RESTORE_MIN:
            self._write_whole(job, data, offset)
            return
        with job.lock:
            if job.fd < 0:
                job.mode, job.mode_final = self.restorer.creation_mode(job.item)
                fd = self.restorer.open_direct_file(job.stored, job.mode) if job.size >= DIRECT_RESTORE_MIN else None
                if fd is not None:
                    job.direct = DirectFile(fd, job.size)
                job.fd = fd if fd is not None else self.restorer.open_file(job.stored, job.mode)
                with self.lock:
                    self.open_jobs.add(job)
            fd = job.fd
        if job.direct is not None:
            job.direct.pwrite(data, offset)
        elif pwrite_sparse(fd, data, offset):
            job.holes = True
        with job.lock:
            job.pending -= 1
            last = job.pending == 0
        with self.lock:
            self.bytes_done += len(data)
        if last:
            with self.lock:
                self.open_jobs.discard(job)
            if job.direct is not None and job.direct.unfinished():
                os.close(fd)
                raise CorruptionError(f"cannot restore {job.item.path!r} from checkpoint {self.manifest_id}: "
                                      f"its chunks do not cover the file")
            self._close(job, fd)

    def _write_whole(self, job: _FileJob, data, offset: int) -> None:
        """A small file in one piece (most files of a tree): created, written and closed here, no locks taken.

        A file whose only chunk is still to come has had no writer: ``fd`` is set before
        ``pending`` drops, so a file of several chunks never gets here.
        """
        job.mode, job.mode_final = self.restorer.creation_mode(job.item)
        fd = self.restorer.open_file(job.stored, job.mode)
        try:
            job.holes = pwrite_sparse(fd, data, offset)
        except BaseException:
            os.close(fd)
            raise
        self._close(job, fd)
        with self.lock:
            self.bytes_done += len(data)

    def _close(self, job: _FileJob, fd: int) -> None:
        # A direct file's last block was written whole: the truncate cuts its padding.
        truncate = job.holes or job.direct is not None or job.size != job.item.size
        self.restorer.close_file(fd, job.item, truncate=truncate, created_with_mode=job.mode_final,
                                 created_with_owner=self.restorer.created_with_owner(job.stored, job.item))
        with self.lock:
            self.files_done += 1


def restore_tree(bank, manifest_id: str, dest_dir: str, prefix: str = "",
                 on_progress: Optional[Callable[[Progress], None]] = None) -> RestoreReport:
    """Restore a checkpoint into ``dest_dir``; see :meth:`Bank.restore_tree`."""
    lease = bank.take_lease("reader")
    restorer: Optional[_TreeRestorer] = None
    try:
        lookup = bank.load_lookup(refresh=True)
        manifest = bank.read_manifest(manifest_id, lookup)
        total = manifest.stats.bytes if not prefix else None
        total_items = (manifest.stats.files + manifest.stats.dirs + manifest.stats.symlinks
                       + manifest.stats.streams) if not prefix else None
        prefix = prefix.strip("/")
        restorer = _TreeRestorer(dest_dir)
        progress = Progress(0, total, 0, total_items)
        others = 0

        def report_progress() -> None:
            if on_progress:
                progress.bytes_done = pipeline.bytes_done
                progress.items_done = pipeline.files_done + others
                on_progress(progress)

        # Threads beyond the cores overlap the blocking file-creation and write calls.
        pipeline = _ParallelRestore(bank, restorer, lookup, manifest_id, threads=bank.workers + 1,
                                    window=bank.workers * 2 + 1, on_batch=report_progress)
        try:
            for item in manifest.items():
                if not prefix:
                    stored = item.path
                elif item.path.startswith(prefix + "/"):
                    stored = item.path[len(prefix) + 1:]
                else:
                    continue
                if item.type in (TYPE_FILE, TYPE_STREAM):
                    pipeline.add_file(stored, item)
                    continue
                if item.type == TYPE_DIR:
                    restorer.make_dir(stored, item)
                elif item.type == TYPE_SYMLINK:
                    restorer.make_symlink(stored, item)
                others += 1
                report_progress()
            pipeline.finish()
        except BaseException:
            pipeline.abort()
            raise
        restorer.report.bytes = pipeline.bytes_done
        report_progress()
        restorer.finish()
        return restorer.report
    finally:
        if restorer is not None:
            restorer.close()  # its directory descriptors, also when the restore failed
        lease.release()


def _find_item(manifest, name: str) -> Item:
    for item in manifest.items():
        if item.path == name:
            return item
    raise BankError(f"item {name!r} not found in checkpoint {manifest.id}")


def open_item(bank, manifest_id: str, name: str) -> Iterator[bytes]:
    """Yield the content of one item; raises CorruptionError naming the item on damage."""
    lease = bank.take_lease("reader")
    try:
        lookup = bank.load_lookup(refresh=True)
        manifest = bank.read_manifest(manifest_id, lookup)
        item = _find_item(manifest, name)
        if item.type not in (TYPE_FILE, TYPE_STREAM):
            raise BankError(f"item {name!r} is a {item.type}, not a file or stream")
    except BaseException:
        lease.release()
        raise

    def generate() -> Iterator[bytes]:
        try:
            with ThreadPoolExecutor(bank.workers, thread_name_prefix="bank-read") as pool:
                events = (("chunk", item, cid) for cid, _ in item.chunks)
                for _, tag, data in fetch_ordered(bank, events, lookup, pool, window=bank.workers * 2):
                    if isinstance(data, Exception):
                        raise CorruptionError(f"cannot read {name!r} from checkpoint {manifest_id}: {data}")
                    yield data
        finally:
            lease.release()

    return generate()
