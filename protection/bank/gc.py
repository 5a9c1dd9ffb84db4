"""Garbage collection: mark (chunks referenced by manifests) and sweep (index rows, packs).

Safety rules (docs/bank.md has the full argument):

* GC holds the exclusive GC lock; sessions write their lease *before* checking that lock.
* Data in packs younger than ``grace_seconds``, or younger than the oldest live lease
  (minus ``clock_skew``), is never swept: an in-flight writer may be about to reference it.
* With no live lease, unreferenced rows are removed at once: any session starting now
  waits for our lock and then reads the new index.
* With live leases, unreferenced rows are only *tombstoned* (new sessions stop deduplicating
  against them); a later GC removes a tombstone once every live lease started after it.
  A tombstoned row that became referenced (a session deduplicated against it before it
  saw the tombstone) is revived.
* A manifest referencing a chunk the index does not know stops GC before anything is deleted.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Set

from .errors import CorruptionError, IndexMismatchError
from .index import IndexEntry, build_full_lookup, pack_id_from_key, pack_key, read_index_objects, write_index_object
from .locks import acquire_gc_lock, read_locks
from .packs import PackWriter


@dataclass
class GCReport:
    """Outcome of one garbage collection."""

    manifests: int = 0
    live_leases: int = 0
    referenced_chunks: int = 0
    removed_rows: int = 0
    tombstoned_rows: int = 0
    revived_rows: int = 0
    deleted_packs: int = 0
    repacked_packs: int = 0
    new_packs: int = 0
    merged_index_objects: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    dry_run: bool = False


def collect_garbage(bank, grace_seconds: float = 24 * 3600, repack_threshold: float = 0.5,
                    clock_skew: float = 300.0, dry_run: bool = False) -> GCReport:
    """Collect garbage in ``bank``; see the module docstring for the rules."""
    backend = bank.backend
    report = GCReport(dry_run=dry_run)
    lock = acquire_gc_lock(backend, bank.lease_ttl)
    try:
        now = time.time()
        all_leases = read_locks(backend, "lease-")
        leases = [lease for lease in all_leases if lease.alive(now)]
        report.live_leases = len(leases)
        earliest: Optional[float] = min(lease.started for lease in leases) - clock_skew if leases else None

        index_keys, rows = read_index_objects(backend, bank.crypto, bank.workers)
        pack_infos = {}
        for info in backend.list("packs/"):
            pid = pack_id_from_key(info.key)
            if pid:
                pack_infos[pid] = info
        index_bytes = sum(info.size for info in backend.list("index/"))
        report.bytes_before = sum(info.size for info in pack_infos.values()) + index_bytes

        # ---- mark
        lookup = build_full_lookup(rows)
        referenced: Set[bytes] = set()
        manifest_ids = bank.list_manifests()
        report.manifests = len(manifest_ids)
        for mid in manifest_ids:
            manifest = bank.read_manifest(mid, lookup)
            try:
                for cid in manifest.chunk_ids():
                    if cid not in lookup:
                        raise IndexMismatchError(
                            f"checkpoint {mid} references chunk {cid.hex()[:16]} missing from the index; "
                            "garbage collection stopped without deleting anything (run check)")
                    referenced.add(cid)
            except CorruptionError as exc:
                raise IndexMismatchError(f"checkpoint {mid} cannot be read ({exc}); garbage collection stopped "
                                         "without deleting anything") from None
        report.referenced_chunks = len(referenced)

        # ---- sweep decisions
        def young(pid: str) -> bool:
            t = pack_infos[pid].mtime
            return t > now - grace_seconds or (earliest is not None and t >= earliest)

        by_id: Dict[bytes, List[IndexEntry]] = {}
        for row in rows:
            by_id.setdefault(row.chunk_id, []).append(row)
        del rows
        kept: List[IndexEntry] = []
        indexed_packs: Set[str] = set()
        for cid, group in by_id.items():
            for row in group:
                indexed_packs.add(row.pack)
            candidates = group
            if cid in referenced:
                present = [r for r in group if r.pack in pack_infos]
                primary = next((r for r in present if r.deleted_at == 0), None)
                if primary is None and present:
                    primary = present[0]._replace(deleted_at=0.0)
                    report.revived_rows += 1
                if primary is None:
                    kept.extend(group)  # pack gone: check reports it; GC must not hide the damage
                    continue
                kept.append(primary)
                candidates = [r for r in group if r is not primary and (r.pack, r.offset) != (primary.pack, primary.offset)]
            for row in candidates:
                if row.pack not in pack_infos:
                    report.removed_rows += 1
                elif row.deleted_at == 0 and young(row.pack):
                    kept.append(row)
                elif not leases:
                    report.removed_rows += 1
                elif row.deleted_at == 0:
                    kept.append(row._replace(deleted_at=now))
                    report.tombstoned_rows += 1
                elif earliest is not None and row.deleted_at < earliest:
                    report.removed_rows += 1
                else:
                    kept.append(row)
        del by_id

        kept_by_pack: Dict[str, List[IndexEntry]] = {}
        for row in kept:
            kept_by_pack.setdefault(row.pack, []).append(row)
        delete_packs: List[str] = []
        repack: List[str] = []
        for pid, info in pack_infos.items():
            rows_here = kept_by_pack.get(pid)
            if not rows_here:
                if pid in indexed_packs or not young(pid):
                    delete_packs.append(pid)
            elif not leases:
                live_bytes = sum(r.length for r in rows_here)
                if info.size and 1.0 - live_bytes / info.size > repack_threshold:
                    repack.append(pid)

        if dry_run:
            report.deleted_packs = len(delete_packs)
            report.repacked_packs = len(repack)
            report.bytes_after = report.bytes_before
            return report

        # ---- repack: copy still-needed sealed blobs as they are (no re-encryption needed)
        new_rows: List[IndexEntry] = []
        if repack:
            packer = PackWriter(backend, bank.crypto, bank.pack_size, on_uploaded=new_rows.extend)
            try:
                for pid in repack:
                    data = backend.get(pack_key(pid))
                    for row in kept_by_pack.pop(pid):
                        blob = data[row.offset: row.offset + row.length]
                        # Verify before copying: a repack must never launder a damaged chunk.
                        bank.crypto.open_chunk(row.chunk_id, blob)
                        packer.add(row.chunk_id, blob, row.raw_size)
                packer.wait()
            finally:
                packer.close()
            report.new_packs = packer.packs_written
        final_rows = [r for rows_here in kept_by_pack.values() for r in rows_here] + new_rows

        # ---- commit: new index first, then drop old index objects, then packs they named.
        # Everything above only read or added; from here on data goes away, so first make
        # sure no other GC took the lock while this one was marking (a pause past the ttl).
        lock.confirm_held()
        if final_rows or index_keys:
            new_key = write_index_object(backend, bank.crypto, final_rows) if final_rows else None
            backend.delete_many(key for key in index_keys if key != new_key)
            report.merged_index_objects = len(index_keys)
        backend.delete_many(pack_key(pid) for pid in delete_packs + repack)
        report.deleted_packs = len(delete_packs)
        report.repacked_packs = len(repack)
        backend.delete_many(lease.key for lease in all_leases if now - lease.refreshed > 2 * lease.ttl)
        report.bytes_after = sum(info.size for info in backend.list("packs/")) + sum(
            info.size for info in backend.list("index/"))
        return report
    finally:
        lock.release()
