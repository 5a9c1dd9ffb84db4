"""Copy a checkpoint into another bank, sending only the chunks that bank lacks.

The two banks have their own keys, so the same plaintext has a different chunk id in
each (ids are keyed hashes, and the chunker's boundaries are keyed too). A copy keeps the
source's chunk boundaries: every plaintext chunk becomes one chunk of the destination,
hashed with the destination's id function and stored only when the destination lacks it.

Reading every source chunk just to learn its destination id would cost a full read of
the checkpoint each time, so a copy first pairs up an earlier copy: a checkpoint the
destination holds whose ``origin`` names this source bank and a checkpoint the source
still holds. Walking both item lists side by side (a copy writes items in the source's
order with the same chunk sizes) maps source ids to destination ids; a chunk found in
that map and still live in the destination is referenced without being read or sent.
Everything else is fetched (coalesced ranged reads, verified on a thread pool), re-hashed
and stored when new. Memory: the id map (two ids per chunk of the reference checkpoint,
like a writer's own index) plus bounded read-ahead and upload windows; data streams.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, Iterator, Optional, Tuple

from .errors import BankError, CorruptionError
from .manifest import TYPE_FILE, TYPE_STREAM, Item, Manifest
from .reader import fetch_ordered


@dataclass
class CopyReport:
    """What a copy did. Bytes are plaintext unless named stored/sent."""

    manifest: Manifest
    reference_id: Optional[str] = None  # the earlier copy whose chunk ids were reused
    bytes: int = 0  # logical size of the checkpoint's files and streams
    bytes_read: int = 0  # plaintext fetched from the source bank
    bytes_new: int = 0  # plaintext the destination did not hold
    bytes_sent: int = 0  # stored bytes written to the destination (packs, index, manifest)
    chunks: int = 0  # data chunks referenced by the checkpoint
    chunks_read: int = 0
    chunks_sent: int = 0  # new data chunks stored in the destination
    chunks_reused: int = 0  # data chunks the destination already held (not sent)
    seconds: float = 0.0


def _origin_of(source, manifest_id: str) -> dict:
    return {"bank_id": source.bank_id, "manifest_id": manifest_id}


def find_reference(
    source, target, manifest: Manifest, reference_id: Optional[str] = None
) -> Optional[Tuple[str, str]]:
    """The earlier copy to map chunk ids from, as ``(source checkpoint id, destination checkpoint id)``, or None.

    A copy may live under another id in the destination (the service gives each copy its own
    checkpoint id); its manifest's ``origin`` names the source checkpoint. An explicit
    ``reference_id`` (a destination checkpoint) must be a copy from this source whose original the
    source still holds; by default the copy of the source checkpoint's parent is used when there
    is one, else the newest earlier copy from this source.
    """
    def origin_here(target_id: str) -> Optional[str]:
        """The source checkpoint ``target_id`` was copied from, if it came from this source and still exists."""
        if not target.manifest_exists(target_id):
            return None
        origin = target.read_manifest(target_id).origin or {}
        original = origin.get("manifest_id")
        if origin.get("bank_id") != source.bank_id or not original or not source.manifest_exists(original):
            return None
        return original

    if reference_id is not None:
        original = origin_here(reference_id)
        if original is None:
            raise BankError(f"checkpoint {reference_id} is not a copy from this source bank in the destination")
        return original, reference_id
    if manifest.parent_id and origin_here(manifest.parent_id) == manifest.parent_id:
        return manifest.parent_id, manifest.parent_id  # copied under the same id (the bank CLI)
    best: Optional[Tuple[str, str]] = None
    best_created = -1.0
    for target_id in target.list_manifests():
        candidate = target.read_manifest(target_id)
        origin = candidate.origin or {}
        original = origin.get("manifest_id")
        if origin.get("bank_id") != source.bank_id or not original or original == manifest.id:
            continue
        if not source.manifest_exists(original):
            continue
        if original == manifest.parent_id:
            return original, target_id
        if candidate.created > best_created:
            best, best_created = (original, target_id), candidate.created
    return best


def map_chunk_ids(source, target, reference: Tuple[str, str], source_lookup) -> Dict[bytes, bytes]:
    """Source chunk id -> destination chunk id, from the two sides of an earlier copy."""
    source_id, target_id = reference
    mapping: Dict[bytes, bytes] = {}
    theirs = target.read_manifest(target_id).items()
    for ours in source.read_manifest(source_id, source_lookup).items():
        copied = next(theirs, None)
        if copied is None or copied.path != ours.path or copied.type != ours.type:
            break  # not the copy we expect: stop trusting the pairing
        if len(copied.chunks) != len(ours.chunks) or any(a[1] != b[1] for a, b in zip(ours.chunks, copied.chunks)):
            continue
        for (src_id, _), (dst_id, _) in zip(ours.chunks, copied.chunks):
            mapping[src_id] = dst_id
    return mapping


def copy_manifest(
    source, target, manifest_id: str, reference_id: Optional[str] = None, *,
    target_id: Optional[str] = None, meta: Optional[dict] = None,
) -> CopyReport:
    """Copy checkpoint ``manifest_id`` from ``source`` into ``target`` as ``target_id`` (default: the same id).

    ``reference_id`` names an earlier copy in the destination to take chunk ids from (default:
    found, see :func:`find_reference`). ``meta`` replaces the source manifest's meta (the
    service writes the copy's own catalog fields). Raises BankError when the destination
    already has ``target_id``.
    """
    target_id = target_id or manifest_id
    from .writer import Writer

    started = time.monotonic()
    if target.bank_id == source.bank_id:
        raise BankError("source and destination are the same bank")
    if target.manifest_exists(target_id):
        raise BankError(f"checkpoint {target_id} already exists in the destination bank")
    lease = source.take_lease("reader")
    try:
        lookup = source.load_lookup(refresh=True)
        manifest = source.read_manifest(manifest_id, lookup)
        reference = find_reference(source, target, manifest, reference_id)
        mapping = map_chunk_ids(source, target, reference, lookup) if reference else {}
        # The parent (the copy of the source's parent) is recorded for the catalogue only: a copy
        # never walks a tree to reuse files.
        parent = reference[1] if reference and manifest.parent_id and reference[0] == manifest.parent_id else None
        report_fields = dict(bytes=0, bytes_read=0, chunks=0, chunks_read=0)
        with Writer(target, target_id, parent_id=parent, reuse_parent_files=False) as writer:
            def events() -> Iterator[tuple]:
                for item in manifest.items():
                    if item.type not in (TYPE_FILE, TYPE_STREAM):
                        yield ("mark", ("item", item, None))
                        continue
                    copied = Item(path=item.path, type=item.type, mode=item.mode, uid=item.uid, gid=item.gid,
                                  mtime_ns=item.mtime_ns, meta=item.meta)
                    for src_id, size in item.chunks:
                        report_fields["chunks"] += 1
                        dst_id = mapping.get(src_id)
                        if dst_id is not None and writer.has_chunk(dst_id):
                            yield ("mark", ("known", copied, (dst_id, size)))
                        else:
                            yield ("chunk", (item, copied), src_id)
                    yield ("mark", ("item", copied, None))

            with ThreadPoolExecutor(source.workers, thread_name_prefix="bank-copy") as pool:
                for kind, tag, payload in _events3(fetch_ordered(source, events(), lookup, pool,
                                                                  window=source.workers * 2)):
                    if kind == "chunk":
                        item, copied = tag
                        if isinstance(payload, Exception):
                            raise CorruptionError(f"cannot copy {item.path!r} from checkpoint {manifest_id}: {payload}")
                        report_fields["bytes_read"] += len(payload)
                        report_fields["chunks_read"] += 1
                        writer.add_chunk(payload, copied)
                    elif tag[0] == "known":
                        writer.add_known_chunk(tag[2][0], tag[2][1], tag[1])
                    else:
                        writer.add_item(tag[1])
            committed = writer.commit(dict(manifest.meta if meta is None else meta),
                                      origin=_origin_of(source, manifest_id))
            stats = committed.stats
            new_data_chunks = stats.new_chunks - writer.new_tree_chunks
            return CopyReport(
                manifest=committed,
                reference_id=reference[1] if reference else None,
                bytes=stats.bytes,
                bytes_read=report_fields["bytes_read"],
                bytes_new=stats.new_bytes,
                bytes_sent=writer.bytes_sent,
                chunks=report_fields["chunks"],
                chunks_read=report_fields["chunks_read"],
                chunks_sent=new_data_chunks,
                chunks_reused=report_fields["chunks"] - new_data_chunks,
                seconds=round(time.monotonic() - started, 3),
            )
    finally:
        lease.release()


def _events3(stream: Iterator[tuple]) -> Iterator[tuple]:
    """fetch_ordered yields ("chunk", tag, data) and ("mark", tag); give both three fields."""
    for event in stream:
        yield event if len(event) == 3 else (event[0], event[1], None)
