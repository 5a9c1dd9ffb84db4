"""Reading checkpoints back: restore a tree, stream one item.

Chunk fetches are planned in order and coalesced: consecutive chunks stored close
together in the same pack are read with one ranged GET, then verified (decrypt,
decompress, re-hash) on a thread pool. ``fetch_ordered`` hands the verified chunks back
in order (streaming one item, verify, copy); a tree restore (``_ParallelRestore``) lets
the workers write them straight into their files, many files at once. From a local bank,
worker processes (``_ProcessRestore``) each run such a pipeline over whole files, large
files interleaved with small ones (``_in_restore_order``).
"""
from __future__ import annotations

import gc
import os
import signal
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Set, Tuple

from .direct_io import DirectFile, pwrite_sparse
from .errors import BankError, CorruptionError, ObjectNotFound
from .index import ChunkLoc, pack_key
from .manifest import TYPE_DIR, TYPE_FILE, TYPE_STREAM, TYPE_SYMLINK, Item
from .safe_fs import RestoreReport, safe_parts as _safe_parts  # noqa: F401 - RestoreReport is re-exported
from .safe_fs import TreeRestorer as _TreeRestorer
from .writer import Progress

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

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


# What restoring an entry costs besides its bytes (creating it, its metadata), in bytes of a large
# file's data: on the benchmark's tree, 6,400 small files took as long as 230 MiB of large ones.
ENTRY_COST = 32 * 1024
LARGE_FILE = DIRECT_RESTORE_MIN
# Worker processes restore whole files: a unit of consecutive files is handed to one process
# at a time, up to these bounds (bytes plus ENTRY_COST per file; a larger file is a unit of its own).
UNIT_COST = 8 * 1024 * 1024
UNIT_FILES = 256
# Threads in each worker process: the second overlaps one's reads and writes with the other's decoding.
WORKER_THREADS = 2


def _exit_with_parent(parent: int) -> None:
    """Have the kernel kill this worker when the restoring process dies, so no worker is orphaned."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


def _worker_main(tasks: Connection, results: Connection, bank, restorer: "_TreeRestorer", lookup,
                 manifest_id: str, parent: int) -> None:
    """A worker process: restore each unit received, answer ("ok", (bytes, files)) or ("error", exception)."""
    _exit_with_parent(parent)
    # The restoring process's handlers (a Celery worker's) are not this process's to run.
    for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGQUIT):
        signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the restoring process's to handle
    # What was inherited stays shared with the restoring process: a collection would write to
    # every inherited object's page, copying them all.
    gc.freeze()
    restorer = restorer.for_worker_process()
    while True:
        try:
            unit = tasks.recv()
        except EOFError:  # the restoring process stopped handing out units
            return
        if unit is None:
            return
        pipeline = _ParallelRestore(bank, restorer, lookup, manifest_id, threads=WORKER_THREADS,
                                    window=WORKER_THREADS * 2 + 1)
        try:
            for stored, item in unit:
                pipeline.add_file(stored, item)
            pipeline.finish()
            answer: tuple = ("ok", (pipeline.bytes_done, pipeline.files_done))
        except BaseException as exc:  # noqa: BLE001 - handed to the restoring process, which raises it
            pipeline.abort()
            answer = ("error", exc if isinstance(exc, BankError) else BankError(f"{type(exc).__name__}: {exc}"))
        try:
            results.send(answer)
        except Exception:  # noqa: BLE001 - an exception that does not pickle still names itself
            results.send(("error", BankError(str(answer[1]))))


class _Worker:
    __slots__ = ("pid", "tasks", "results", "busy")

    def __init__(self, pid: int, tasks: Connection, results: Connection) -> None:
        self.pid, self.tasks, self.results, self.busy = pid, tasks, results, 0


class _ProcessRestore:
    """Restore file data in worker processes, each file whole in one process.

    ``_ParallelRestore``'s threads share one interpreter: a tree of small files spends its
    time in per-file system calls, each of which hands the GIL over. Worker processes each
    run their own ``_ParallelRestore`` over the units of consecutive files handed to them,
    at most two units each at a time, which bounds memory. They are forked when the restore
    starts, so they hold the bank's key, index snapshot and destination descriptor without
    sending them anywhere. Plain ``os.fork`` and pipes, not ``multiprocessing``: a Celery
    prefork worker is a daemonic process, which ``multiprocessing`` refuses to give children.
    Results, errors and progress are collected on the calling thread.
    """

    def __init__(self, bank, restorer: "_TreeRestorer", lookup, manifest_id: str, processes: int,
                 on_unit: Optional[Callable[[], None]] = None) -> None:
        self.on_unit = on_unit
        self.workers: List[_Worker] = []
        self.unit: List[Tuple[str, Item]] = []
        self.unit_cost = 0
        self.bytes_done = 0
        self.files_done = 0
        from multiprocessing.connection import Pipe  # here: most uses of the bank never fork

        parent = os.getpid()
        try:
            for _ in range(processes):
                task_reader, task_writer = Pipe(duplex=False)
                result_reader, result_writer = Pipe(duplex=False)
                pid = os.fork()
                if pid == 0:  # the worker: never returns into the caller's stack
                    code = 0
                    try:
                        task_writer.close()
                        result_reader.close()
                        for earlier in self.workers:
                            earlier.tasks.close()
                            earlier.results.close()
                        _worker_main(task_reader, result_writer, bank, restorer, lookup, manifest_id, parent)
                    except BaseException:  # noqa: BLE001 - nothing of the caller's may run here
                        code = 1
                    finally:
                        os._exit(code)
                task_reader.close()
                result_writer.close()
                self.workers.append(_Worker(pid, task_writer, result_reader))
        except BaseException:
            self.abort()
            raise

    def add_file(self, stored: str, item: Item) -> None:
        _safe_parts(stored)  # refuse a bad name before any worker touches the disk
        self.unit.append((stored, item))
        self.unit_cost += item.size + ENTRY_COST
        if self.unit_cost >= UNIT_COST or len(self.unit) >= UNIT_FILES:
            self.flush()

    def flush(self) -> None:
        if not self.unit:
            return
        unit, self.unit, self.unit_cost = self.unit, [], 0
        while True:
            idle = min(self.workers, key=lambda worker: worker.busy)
            if idle.busy < 2:
                break
            self._collect()
        try:
            idle.tasks.send(unit)
        except OSError:
            raise self._died() from None
        idle.busy += 1

    def _collect(self) -> None:
        """Wait for at least one answer; take every answer that has come."""
        from multiprocessing.connection import wait

        ready = wait([worker.results for worker in self.workers if worker.busy])
        for worker in self.workers:
            if worker.results not in ready:
                continue
            try:
                status, value = worker.results.recv()
            except (EOFError, OSError):
                raise self._died() from None
            worker.busy -= 1
            if status != "ok":
                raise value
            self.bytes_done += value[0]
            self.files_done += value[1]
        if self.on_unit:
            self.on_unit()

    @staticmethod
    def _died() -> BankError:
        return BankError("a restore worker process died (killed, or out of memory?)")

    def finish(self) -> None:
        """Hand over the last unit and wait for every unit; re-raise the first worker error."""
        self.flush()
        while any(worker.busy for worker in self.workers):
            self._collect()
        self._stop()

    def abort(self) -> None:
        """Stop after an error (or Ctrl-C, a time limit): the workers are killed, the restore has failed."""
        self._stop(kill=True)

    def _stop(self, kill: bool = False) -> None:
        for worker in self.workers:
            try:
                if kill:
                    os.kill(worker.pid, signal.SIGKILL)
                else:
                    worker.tasks.send(None)
            except OSError:
                pass
            worker.tasks.close()
        for worker in self.workers:
            try:
                os.waitpid(worker.pid, 0)
            except ChildProcessError:
                pass
            worker.results.close()
        self.workers = []


def restore_processes(bank) -> int:
    """How many worker processes a restore from ``bank`` forks; 1: none, threads of this process restore."""
    if not getattr(bank.backend, "fork_safe", False):
        return 1
    value = os.environ.get("BANK_RESTORE_PROCESSES", "")
    try:
        return max(1, int(value)) if value.strip() else bank.workers
    except ValueError:
        raise BankError(f"BANK_RESTORE_PROCESSES must be a whole number, not {value!r}") from None


def _in_restore_order(manifest, prefix: str) -> Iterator[Tuple[str, Item]]:
    """(name under ``prefix``, item) for each entry to restore, large files interleaved among the rest.

    Large files keep the disks busy and small ones the processors (a system call or two per
    file). Taken in manifest order (all of ``blobs/`` before all of ``small/``), one phase
    leaves the processors idle and the next the disks. Two passes over the item list, merged
    by what each has restored so far (``ENTRY_COST`` per entry plus its bytes), keep both busy
    (on the benchmark's tree, restoring its large and its small files at once took a third less
    time than one after the other). A directory may now
    be reached by a file before its own entry: the file's parent is created ``0700``, as any
    missing parent is, and gets its recorded metadata at the end like every directory.
    """
    def entries(large: bool) -> Iterator[Tuple[str, Item]]:
        for item in manifest.items():
            if not prefix:
                stored = item.path
            elif item.path.startswith(prefix + "/"):
                stored = item.path[len(prefix) + 1:]
            else:
                continue
            if (item.type in (TYPE_FILE, TYPE_STREAM) and item.size >= LARGE_FILE) == large:
                yield stored, item

    streams = [entries(False), entries(True)]
    upcoming = [next(stream, None) for stream in streams]
    spent = [0, 0]
    while upcoming[0] is not None or upcoming[1] is not None:
        side = 0 if upcoming[1] is None or (upcoming[0] is not None and spent[0] <= spent[1]) else 1
        stored, item = upcoming[side]
        yield stored, item
        spent[side] += item.size + ENTRY_COST
        upcoming[side] = next(streams[side], None)


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

        processes = restore_processes(bank)
        if processes > 1:
            pipeline = _ProcessRestore(bank, restorer, lookup, manifest_id, processes, on_unit=report_progress)
        else:
            # Threads beyond the cores overlap the blocking file-creation and write calls.
            pipeline = _ParallelRestore(bank, restorer, lookup, manifest_id, threads=bank.workers + 1,
                                        window=bank.workers * 2 + 1, on_batch=report_progress)
        try:
            for stored, item in _in_restore_order(manifest, prefix):
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
        restorer.report.files = pipeline.files_done  # closed by workers, maybe in other processes
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
