"""Reading checkpoints back: restore a tree, stream one item, copy to another bank.

Chunk fetches are planned in order and coalesced: consecutive chunks stored close
together in the same pack are read with one ranged GET (at most ~8 MiB), then verified
(decrypt, decompress, re-hash) on a thread pool while the calling thread writes files.
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Tuple

from .errors import BankError, CorruptionError, ObjectNotFound
from .index import ChunkLoc, pack_key
from .manifest import TYPE_DIR, TYPE_FILE, TYPE_STREAM, TYPE_SYMLINK, Item
from .safe_fs import RestoreReport, safe_parts as _safe_parts  # noqa: F401 - RestoreReport is re-exported
from .safe_fs import TreeRestorer as _TreeRestorer
from .writer import Progress

BATCH_RAW_LIMIT = 8 * 1024 * 1024
BATCH_GAP_LIMIT = 512 * 1024
BATCH_MAX_CHUNKS = 2048


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


SPARSE_BLOCK = 64 * 1024
_ZERO_BLOCK = bytes(SPARSE_BLOCK)


def write_sparse(fd: int, data: bytes) -> None:
    """Write ``data`` at the current offset, seeking over all-zero 64 KiB blocks to leave holes."""
    n = len(data)
    view = memoryview(data)
    run_start = 0
    pos = 0
    while pos < n:
        end = pos + SPARSE_BLOCK
        # Cheap probes first: real data almost never starts and ends a block with zero bytes.
        if end <= n and data[pos] == 0 and data[end - 1] == 0 and data[pos:end] == _ZERO_BLOCK:
            _write_all(fd, view[run_start:pos])
            os.lseek(fd, SPARSE_BLOCK, os.SEEK_CUR)
            run_start = end
        pos = end
    _write_all(fd, view[run_start:n])


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view):]


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

        def selected() -> Iterator[Tuple[str, Item]]:
            for item in manifest.items():
                if not prefix:
                    yield item.path, item
                elif item.path.startswith(prefix + "/"):
                    yield item.path[len(prefix) + 1:], item

        def events() -> Iterator[tuple]:
            for stored, item in selected():
                if item.type in (TYPE_FILE, TYPE_STREAM):
                    yield ("mark", ("open", stored, item))
                    for cid, _ in item.chunks:
                        yield ("chunk", item, cid)
                    yield ("mark", ("close", stored, item))
                else:
                    yield ("mark", ("other", stored, item))

        fd = -1
        with ThreadPoolExecutor(bank.workers, thread_name_prefix="bank-restore") as pool:
            try:
                for kind, tag, *rest in fetch_ordered(bank, events(), lookup, pool, window=bank.workers * 2):
                    if kind == "chunk":
                        data = rest[0]
                        if isinstance(data, Exception):
                            raise CorruptionError(f"cannot restore {tag.path!r} from checkpoint {manifest_id}: {data}")
                        write_sparse(fd, data)
                        progress.bytes_done += len(data)
                        restorer.report.bytes += len(data)
                        if on_progress:
                            on_progress(progress)
                        continue
                    action, stored, item = tag
                    if action == "open":
                        fd = restorer.open_file(stored)
                    elif action == "close":
                        restorer.close_file(fd, item)
                        fd = -1
                        progress.items_done += 1
                    elif item.type == TYPE_DIR:
                        restorer.make_dir(stored, item)
                        progress.items_done += 1
                    elif item.type == TYPE_SYMLINK:
                        restorer.make_symlink(stored, item)
                        progress.items_done += 1
                    if on_progress and action != "open":
                        on_progress(progress)
            finally:
                if fd >= 0:
                    os.close(fd)
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


def copy_manifest(source, target, manifest_id: str):
    """Copy one checkpoint into another bank: chunks are re-cut only implicitly (ids are re-keyed)."""
    from .writer import Writer

    manifest = source.read_manifest(manifest_id)
    with Writer(target, manifest_id) as w:
        for item in manifest.items():
            if item.type in (TYPE_FILE, TYPE_STREAM):
                data = open_item(source, manifest_id, item.path) if item.chunks else iter(())
                copied = Item(path=item.path, type=item.type, mode=item.mode, uid=item.uid, gid=item.gid,
                              mtime_ns=item.mtime_ns, meta=item.meta)
                for chunk in data:
                    w._submit_chunk(chunk, copied, _NoProgress)
                w._finish_item(copied, _NoProgress)
            else:
                w._finish_item(item, _NoProgress)
        return w.commit(dict(manifest.meta))


class _NoProgressType:
    bytes_done = 0
    items_done = 0

    def report(self) -> None:
        pass


_NoProgress = _NoProgressType()
