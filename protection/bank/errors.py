"""Exceptions raised by the bank."""
from __future__ import annotations


class BankError(Exception):
    """Base class for every bank error."""


class BackendError(BankError):
    """The storage backend failed or was used wrongly."""


class ObjectNotFound(BackendError):
    """A requested object does not exist in the backend."""

    def __init__(self, key: str) -> None:
        super().__init__(f"object {key!r} not found")
        self.key = key


class WrongPassphraseError(BankError):
    """The passphrase does not unlock the bank's key file."""


class CorruptionError(BankError):
    """Stored data failed authentication, decompression or hash verification."""


class BankLockedError(BankError):
    """Another process holds a lock that conflicts with the requested operation."""


class IndexMismatchError(BankError):
    """A manifest references a chunk the index does not know: GC refuses to run."""
