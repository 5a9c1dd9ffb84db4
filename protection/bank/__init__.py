"""The bank: deduplicating, compressed, encrypted checkpoint storage (no Django imports).

Quick use::

    from protection.bank import Bank, LocalBackend
    bank = Bank.init_or_open(LocalBackend("/srv/bank"), passphrase="secret")
    with bank.writer(manifest_id=str(uuid4()), parent_id=previous_id) as w:
        w.add_tree("/data", prefix="fs", on_progress=print)
        w.add_stream("dump.sql", dump_file_or_iterator, meta={"db": "app"})
        manifest = w.commit(meta={"plan": "nightly"})
    bank.restore_tree(manifest.id, "/restore/here", prefix="fs")

Progress callbacks receive one :class:`Progress` argument with ``bytes_done``,
``bytes_total`` (None when unknown, e.g. during a tree walk), ``items_done`` and
``items_total`` (None when unknown). They run in the calling thread.

Format, encryption, GC protocol and benchmarks: ``docs/bank.md``.
"""
from .backends import Backend, LocalBackend, ObjectInfo, S3Backend
from .bank import Bank
from .check import CheckReport
from .chunker import ChunkerParams
from .errors import (
    BackendError, BankError, BankLockedError, CorruptionError, IndexMismatchError, ObjectNotFound,
    WrongPassphraseError,
)
from .gc import GCReport
from .manifest import Item, Manifest, ManifestStats
from .reader import RestoreReport
from .transfer import CopyReport
from .writer import Progress, Writer

__all__ = [
    "Backend", "LocalBackend", "S3Backend", "ObjectInfo", "Bank", "Writer", "Manifest", "ManifestStats", "Item",
    "Progress", "CheckReport", "GCReport", "RestoreReport", "CopyReport", "ChunkerParams", "BankError", "BackendError",
    "ObjectNotFound", "CorruptionError", "WrongPassphraseError", "BankLockedError", "IndexMismatchError",
]
