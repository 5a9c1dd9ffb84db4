"""Bank verification: structural (index vs packs vs manifests) and full (read_data)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Set, Tuple

from .errors import BankError, CorruptionError, ObjectNotFound
from .index import INDEX_KIND, INDEX_PREFIX, IndexEntry, build_full_lookup, decode_index, pack_id_from_key, pack_key
from .packs import PACK_MAGIC, read_pack_table

MAX_ERRORS = 1000


@dataclass
class CheckReport:
    """Result of :meth:`Bank.check`: ``ok`` is False when ``errors`` is not empty."""

    ok: bool = True
    errors: List[str] = field(default_factory=list)
    manifests: int = 0
    packs: int = 0
    chunks: int = 0
    chunks_read: int = 0

    def error(self, message: str) -> None:
        self.ok = False
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(message)


def _verify_pack(bank, pid: str, rows: List[IndexEntry]) -> Tuple[List[str], Dict[bytes, str]]:
    """Read a whole pack; return (pack-level errors, chunk id -> error)."""
    problems: List[str] = []
    bad: Dict[bytes, str] = {}
    try:
        data = bank.backend.get(pack_key(pid))
    except ObjectNotFound:
        return [f"pack {pid} is missing"], {r.chunk_id: f"pack {pid} is missing" for r in rows}
    if not data.startswith(PACK_MAGIC):
        problems.append(f"pack {pid}: bad header")
    for row in rows:
        blob = data[row.offset: row.offset + row.length]
        if len(blob) != row.length:
            bad[row.chunk_id] = f"pack {pid} is truncated"
            continue
        try:
            if len(bank.crypto.open_chunk(row.chunk_id, blob)) != row.raw_size:
                bad[row.chunk_id] = f"pack {pid}: chunk size differs from the index"
        except CorruptionError as exc:
            bad[row.chunk_id] = f"pack {pid}: {exc}"
    try:
        table = read_pack_table(_OneObject(pid, data), bank.crypto, pid)
        if {(r.chunk_id, r.offset, r.length) for r in table} < {(r.chunk_id, r.offset, r.length) for r in rows}:
            problems.append(f"pack {pid}: trailer does not list every indexed chunk")
    except CorruptionError as exc:
        problems.append(f"pack {pid}: trailer damaged ({exc})")
    return problems, bad


class _OneObject:
    """Minimal backend view over an already-downloaded pack."""

    def __init__(self, pid: str, data: bytes) -> None:
        self._key, self._data = pack_key(pid), data

    def get(self, key: str) -> bytes:
        return self._data

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        return self._data[offset: offset + length]


def check_bank(bank, read_data: bool = False) -> CheckReport:
    """Check every manifest's chunks against the index and the packs (and their content with read_data)."""
    report = CheckReport()
    backend = bank.backend
    rows: List[IndexEntry] = []
    for info in backend.list(INDEX_PREFIX):
        what = f"index object {info.key}"
        try:
            rows.extend(decode_index(bank.crypto.open_meta(backend.get(info.key), INDEX_KIND, what), what))
        except (CorruptionError, ObjectNotFound) as exc:
            report.error(str(exc))
    pack_sizes = {}
    for info in backend.list("packs/"):
        pid = pack_id_from_key(info.key)
        if pid:
            pack_sizes[pid] = info.size
    report.packs = len(pack_sizes)
    lookup = build_full_lookup(rows)
    report.chunks = len(lookup)

    # Problems per chunk id, found first so manifest errors can name the items.
    bad: Dict[bytes, str] = {}
    for cid, loc in lookup.items():
        size = pack_sizes.get(loc.pack)
        if size is None:
            bad[cid] = f"pack {loc.pack} is missing"
        elif loc.offset + loc.length > size - 8:
            bad[cid] = f"pack {loc.pack} is truncated"
    missing_packs = sorted({loc.pack for loc in lookup.values() if loc.pack not in pack_sizes})
    for pid in missing_packs:
        report.error(f"pack {pid} is missing (named by the index)")
    for pid in sorted({lookup[c].pack for c, reason in bad.items() if "truncated" in reason}):
        report.error(f"pack {pid} is truncated (size {pack_sizes[pid]})")

    if read_data:
        by_pack: Dict[str, List[IndexEntry]] = {}
        for cid, loc in lookup.items():
            if loc.pack in pack_sizes:
                by_pack.setdefault(loc.pack, []).append(IndexEntry(cid, *loc))
        with ThreadPoolExecutor(bank.workers) as pool:
            futures = {pid: pool.submit(_verify_pack, bank, pid, prs) for pid, prs in by_pack.items()}
            for pid, fut in futures.items():
                problems, bad_chunks = fut.result()
                for problem in problems:
                    report.error(problem)
                for cid, reason in bad_chunks.items():
                    bad.setdefault(cid, reason)
                report.chunks_read += len(by_pack[pid])
        for cid, reason in bad.items():
            if "truncated" not in reason and "missing" not in reason:
                report.error(f"chunk {cid.hex()[:16]}: {reason}")

    manifest_ids = bank.list_manifests()
    report.manifests = len(manifest_ids)
    for mid in manifest_ids:
        try:
            manifest = bank.read_manifest(mid, lookup)
        except BankError as exc:
            report.error(f"checkpoint {mid}: {exc}")
            continue
        for cid in manifest.tree_chunks:
            if cid not in lookup:
                report.error(f"checkpoint {mid}: item list chunk {cid.hex()[:16]} is missing from the index")
            elif cid in bad:
                report.error(f"checkpoint {mid}: item list chunk {cid.hex()[:16]}: {bad[cid]}")
        try:
            reported: Set[str] = set()
            for item in manifest.items():
                for cid, _ in item.chunks:
                    if cid not in lookup:
                        problem = f"chunk {cid.hex()[:16]} is missing from the index"
                    elif cid in bad:
                        problem = f"chunk {cid.hex()[:16]}: {bad[cid]}"
                    else:
                        continue
                    if item.path not in reported:
                        reported.add(item.path)
                        report.error(f"checkpoint {mid}: item {item.path!r}: {problem}")
        except BankError as exc:
            report.error(f"checkpoint {mid}: item list unreadable: {exc}")
    return report
