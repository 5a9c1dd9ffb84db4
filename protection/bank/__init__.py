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
from importlib import import_module
from typing import TYPE_CHECKING

from .backends import Backend, LocalBackend, ObjectInfo, S3Backend
from .bank import Bank
from .chunker import ChunkerParams
from .errors import (
    BackendError, BankError, BankLockedError, CorruptionError, IndexMismatchError, ObjectNotFound,
    WrongPassphraseError,
)
from .manifest import Item, Manifest, ManifestStats

# Imported on first use (PEP 562): a protect needs no restore, check, GC or copy code, and the
# command line pays for every module it imports on each run (about 10 ms of its start).
_LAZY = {
    "CheckReport": ".check", "GCReport": ".gc", "RestoreReport": ".reader", "CopyReport": ".transfer",
    "Progress": ".writer", "Writer": ".writer",
}

if TYPE_CHECKING:
    from .check import CheckReport
    from .gc import GCReport
    from .reader import RestoreReport
    from .transfer import CopyReport
    from .writer import Progress, Writer


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "Backend", "LocalBackend", "S3Backend", "ObjectInfo", "Bank", "Writer", "Manifest", "ManifestStats", "Item",
    "Progress", "CheckReport", "GCReport", "RestoreReport", "CopyReport", "ChunkerParams", "BankError", "BackendError",
    "ObjectNotFound", "CorruptionError", "WrongPassphraseError", "BankLockedError", "IndexMismatchError",
]
