"""The :class:`Bank`: opening/creating a bank and the operations on checkpoints."""
from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Optional, Set

from .backends import Backend
from .chunker import Chunker, ChunkerParams
from .crypto import DEFAULT_SCRYPT_N, Crypto, MasterKey, open_key_file, seal_key_file
from .errors import BankError, CorruptionError, ObjectNotFound
from .index import ChunkLoc, IndexCache, pack_key
from .locks import DEFAULT_LEASE_TTL, Lease, wait_for_gc
from .manifest import MANIFEST_KIND, MANIFEST_PREFIX, Manifest, manifest_key
from .packs import DEFAULT_PACK_SIZE

if TYPE_CHECKING:
    from .check import CheckReport
    from .gc import GCReport
    from .transfer import CopyReport
    from .writer import Writer

CONFIG_KEY = "config"
TREE_CACHE_BYTES = 8 * 1024 * 1024
KEY_FILE_KEY = "keys/key"
FORMAT_VERSION = 1
# zstd level of new banks. On the benchmark's text (CSV and logs, 1 MiB chunks) level 1 compresses
# at 415 MB/s to 27.3 % where level 3 manages 307 MB/s and 28.3 %; compression is the largest CPU
# cost of a protect. A bank keeps the level it was created with (``config``); any level reads back.
DEFAULT_COMPRESSION_LEVEL = 1


class Bank:
    """An open bank. Create with :meth:`init`, :meth:`open` or :meth:`init_or_open`.

    Thread-safety: a Bank may be shared by threads; each writer/restore uses its own
    worker pool and index snapshot.
    """

    def __init__(
        self,
        backend: Backend,
        config: dict,
        master: Optional[MasterKey],
        workers: int = 2,
        pack_size: Optional[int] = None,
        index_every_packs: int = 8,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        compression_level: Optional[int] = None,
    ) -> None:
        self.backend = backend
        self.config = config
        self.bank_id: str = config["bank_id"]
        level = compression_level if compression_level is not None else int(config.get("compression_level", 3))
        self.crypto = Crypto(master, level)
        self.chunker_params = ChunkerParams.from_dict(config["chunker"])
        self.workers = max(1, int(workers))
        self.pack_size = int(pack_size or config.get("pack_size", DEFAULT_PACK_SIZE))
        self.index_every_packs = max(1, index_every_packs)
        self.lease_ttl = lease_ttl
        self._lookup: Optional[Dict[bytes, ChunkLoc]] = None
        self._index_cache = IndexCache()
        # Item lists are read by the caller, then by the restore: keep recent ones (content-addressed, never stale).
        self._tree_cache = _ChunkCache(TREE_CACHE_BYTES)

    # ----------------------------------------------------------------- lifecycle
    @classmethod
    def init(
        cls,
        backend: Backend,
        passphrase: Optional[str] = None,
        compression_level: int = DEFAULT_COMPRESSION_LEVEL,
        chunker: Optional[ChunkerParams] = None,
        pack_size: int = DEFAULT_PACK_SIZE,
        scrypt_n: int = DEFAULT_SCRYPT_N,
        **open_kwargs,
    ) -> "Bank":
        """Create a new bank (config + key file) and return it open. Raises BankError if one exists."""
        if backend.exists(CONFIG_KEY):
            raise BankError(f"a bank already exists at {backend.describe()}")
        params = chunker or ChunkerParams()
        config = {
            "version": FORMAT_VERSION,
            "bank_id": uuid.uuid4().hex,
            "created": time.time(),
            "encryption": "chacha20-poly1305" if passphrase else "none",
            "chunk_id": "blake3-keyed" if passphrase else "blake3-fixed-key",
            "compression": "zstd",
            "compression_level": compression_level,
            "chunker": params.to_dict(),
            "pack_size": pack_size,
        }
        master = None
        if passphrase:
            master = MasterKey.generate()
            # Key file first: a config without its key would be an unusable bank.
            backend.put(KEY_FILE_KEY, seal_key_file(master, passphrase, config["bank_id"], scrypt_n))
        backend.put(CONFIG_KEY, json.dumps(config, indent=1).encode())
        return cls(backend, config, master, **open_kwargs)

    @classmethod
    def open(cls, backend: Backend, passphrase: Optional[str] = None, **open_kwargs) -> "Bank":
        """Open an existing bank; raises WrongPassphraseError for a wrong or missing passphrase."""
        try:
            config = json.loads(backend.get(CONFIG_KEY))
        except ObjectNotFound:
            raise BankError(f"no bank at {backend.describe()}") from None
        except ValueError as exc:
            raise CorruptionError(f"bank config is unreadable: {exc}") from None
        if config.get("version") != FORMAT_VERSION:
            raise BankError(f"unsupported bank format version {config.get('version')}")
        master = None
        if config.get("encryption", "none") != "none":
            if not passphrase:
                raise BankError("this bank is encrypted: a passphrase is required")
            try:
                key_data = backend.get(KEY_FILE_KEY)
            except ObjectNotFound:
                raise BankError("the bank's key file is missing") from None
            master = open_key_file(key_data, passphrase, config["bank_id"])
        return cls(backend, config, master, **open_kwargs)

    @classmethod
    def init_or_open(cls, backend: Backend, passphrase: Optional[str] = None, **kwargs) -> "Bank":
        """Open the bank, creating it first when the location is empty."""
        if backend.exists(CONFIG_KEY):
            init_only = ("compression_level", "chunker", "scrypt_n")
            return cls.open(backend, passphrase, **{k: v for k, v in kwargs.items() if k not in init_only})
        return cls.init(backend, passphrase, **kwargs)

    def change_passphrase(self, new_passphrase: str, scrypt_n: int = DEFAULT_SCRYPT_N) -> None:
        """Re-wrap the master key under a new passphrase; data is not rewritten."""
        if not self.crypto.master:
            raise BankError("an unencrypted bank has no passphrase")
        if not new_passphrase:
            raise BankError("the new passphrase must not be empty")
        self.backend.put(KEY_FILE_KEY, seal_key_file(self.crypto.master, new_passphrase, self.bank_id, scrypt_n))

    @property
    def encrypted(self) -> bool:
        return self.crypto.encrypted

    def new_chunker(self) -> Chunker:
        return Chunker(self.chunker_params, self.crypto.chunker_seed)

    # ----------------------------------------------------------------- sessions
    def take_lease(self, kind: str) -> Lease:
        """Write a lease, then wait for a running GC to finish (order matters, see locks.py)."""
        lease = Lease(self.backend, kind, self.lease_ttl)
        try:
            wait_for_gc(self.backend, timeout=self.lease_ttl)
        except BaseException:
            lease.release()
            raise
        return lease

    def writer(self, manifest_id: str, parent_id: Optional[str] = None) -> "Writer":
        """Start a writer session (use as a context manager); see :class:`~.writer.Writer`."""
        from .writer import Writer

        return Writer(self, manifest_id, parent_id)

    # ----------------------------------------------------------------- index
    def load_lookup(self, refresh: bool = True) -> Dict[bytes, ChunkLoc]:
        """Chunk id -> location (tombstoned rows included; live rows win).

        A refresh lists the index and reads only the index objects this Bank has not
        loaded yet (see :class:`~.index.IndexCache`), so repeated restores do not reload it.
        """
        if refresh or self._lookup is None:
            self._lookup = self._index_cache.refresh(self.backend, self.crypto, self.workers)
        return self._lookup

    def load_live_chunk_ids(self) -> Set[bytes]:
        """Refresh the lookup (as :meth:`load_lookup`) and return the ids of the chunks with a live row:
        what a writer may deduplicate against (a tombstoned chunk may be swept by the GC under way)."""
        self._lookup, live = self._index_cache.refresh_with_live_ids(self.backend, self.crypto, self.workers)
        return live

    def read_chunk(self, chunk_id: bytes, what: str, lookup: Optional[Dict[bytes, ChunkLoc]] = None) -> bytes:
        """Fetch and verify one chunk; errors name ``what``."""
        lookup = lookup if lookup is not None else self.load_lookup(refresh=False)
        loc = lookup.get(chunk_id)
        if loc is None and lookup is self._lookup:
            lookup = self.load_lookup(refresh=True)
            loc = lookup.get(chunk_id)
        if loc is None:
            raise CorruptionError(f"{what}: chunk {chunk_id.hex()[:16]} is missing from the index")
        try:
            blob = self.backend.get_range(pack_key(loc.pack), loc.offset, loc.length)
        except ObjectNotFound:
            raise CorruptionError(f"{what}: pack {loc.pack} is missing") from None
        if len(blob) != loc.length:
            raise CorruptionError(f"{what}: pack {loc.pack} is truncated")
        try:
            return self.crypto.open_chunk(chunk_id, blob)
        except CorruptionError as exc:
            raise CorruptionError(f"{what}: {exc}") from None

    # ----------------------------------------------------------------- manifests
    def list_manifests(self) -> List[str]:
        """Ids of all committed checkpoints (sorted)."""
        return sorted(info.key[len(MANIFEST_PREFIX):] for info in self.backend.list(MANIFEST_PREFIX))

    def manifest_exists(self, manifest_id: str) -> bool:
        return self.backend.exists(manifest_key(manifest_id))

    def read_manifest(self, manifest_id: str, lookup: Optional[Dict[bytes, ChunkLoc]] = None) -> Manifest:
        """Read a committed checkpoint's manifest (items are streamed lazily)."""
        key = manifest_key(manifest_id)
        try:
            blob = self.backend.get(key)
        except ObjectNotFound:
            raise BankError(f"checkpoint {manifest_id} not found in the bank") from None
        data = self.crypto.open_meta(blob, MANIFEST_KIND, f"manifest {manifest_id}")
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise CorruptionError(f"manifest {manifest_id}: unreadable ({exc})") from None
        if doc.get("id") != manifest_id:
            raise CorruptionError(f"manifest {manifest_id}: id mismatch ({doc.get('id')!r})")

        def load(cid: bytes, what: str) -> bytes:
            cached = self._tree_cache.get(cid)
            if cached is None:
                cached = self._tree_cache.put(cid, self.read_chunk(cid, what, lookup))
            return cached

        return Manifest(doc, load)

    def delete_manifest(self, manifest_id: str) -> None:
        """Delete a checkpoint; its data is reclaimed by :meth:`gc`."""
        key = manifest_key(manifest_id)
        if not self.backend.exists(key):
            raise BankError(f"checkpoint {manifest_id} not found in the bank")
        self.backend.delete(key)

    # ----------------------------------------------------------------- restore
    def restore_tree(self, manifest_id: str, dest_dir: str, prefix: str = "",
                     on_progress: Optional[Callable] = None) -> "object":
        """Restore the items of a checkpoint (under ``prefix``, which is stripped) into ``dest_dir``.

        Writes go through directory descriptors and follow no symlink, in ``dest_dir``'s own
        components too (see ``safe_fs``): resolve an operator-given path first.
        """
        from .reader import restore_tree

        return restore_tree(self, manifest_id, dest_dir, prefix, on_progress)

    def open_item(self, manifest_id: str, name: str) -> Iterator[bytes]:
        """Stream one item's content (file or stream) as an iterator of bytes."""
        from .reader import open_item

        return open_item(self, manifest_id, name)

    # ----------------------------------------------------------------- maintenance
    def gc(self, grace_seconds: float = 24 * 3600, **kwargs) -> "GCReport":
        """Mark and sweep unreferenced data; see :func:`~.gc.collect_garbage`."""
        from .gc import collect_garbage

        return collect_garbage(self, grace_seconds=grace_seconds, **kwargs)

    def check(self, read_data: bool = False) -> "CheckReport":
        """Verify the bank's structure (and with ``read_data`` every chunk's content)."""
        from .check import check_bank

        return check_bank(self, read_data=read_data)

    def copy_manifest_to(
        self, other: "Bank", manifest_id: str, reference_id: Optional[str] = None, *,
        target_id: Optional[str] = None, meta: Optional[dict] = None,
    ) -> "CopyReport":
        """Copy a checkpoint into ``other`` (its own keys) as ``target_id``, sending only chunks it lacks;
        see :mod:`.transfer`."""
        from .transfer import copy_manifest

        return copy_manifest(self, other, manifest_id, reference_id, target_id=target_id, meta=meta)

    def stored_bytes(self) -> int:
        """Total size of every object in the bank."""
        return sum(info.size for info in self.backend.list(""))


class _ChunkCache:
    """A small thread-safe LRU of verified chunks, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._data: "OrderedDict[bytes, bytes]" = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, cid: bytes) -> Optional[bytes]:
        with self._lock:
            data = self._data.get(cid)
            if data is not None:
                self._data.move_to_end(cid)
            return data

    def put(self, cid: bytes, data: bytes) -> bytes:
        if len(data) > self.max_bytes // 4:
            return data
        with self._lock:
            if cid not in self._data:
                self._data[cid] = data
                self._size += len(data)
                while self._size > self.max_bytes:
                    _, old = self._data.popitem(last=False)
                    self._size -= len(old)
        return data


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 2))
