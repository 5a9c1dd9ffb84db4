"""Leases and the GC lock, stored as small objects under ``locks/``.

Protocol (see docs/bank.md): a writer or reader first writes its lease, *then* checks for a
GC lock; GC first writes its lock, *then* lists leases. With a strongly consistent store
(local disk, S3) at least one side always sees the other, so GC either knows about the
session (and protects what it may need) or the session waits for GC to finish before it
reads the index.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import List, Optional

from .backends import Backend
from .errors import BankLockedError, ObjectNotFound

LOCK_PREFIX = "locks/"
DEFAULT_LEASE_TTL = 600.0


@dataclass(frozen=True)
class LeaseInfo:
    """A lease or lock object as read back from the bank."""

    key: str
    kind: str
    started: float
    refreshed: float
    ttl: float

    def alive(self, now: Optional[float] = None) -> bool:
        return (now or time.time()) - self.refreshed <= self.ttl


def _doc(kind: str, started: float, ttl: float) -> bytes:
    return json.dumps(
        {"kind": kind, "started": started, "refreshed": time.time(), "ttl": ttl,
         "host": socket.gethostname(), "pid": os.getpid()}
    ).encode()


def read_locks(backend: Backend, kind_prefix: str) -> List[LeaseInfo]:
    """All lock objects whose key starts with ``locks/<kind_prefix>``; unreadable ones are skipped."""
    found = []
    for info in backend.list(LOCK_PREFIX + kind_prefix):
        try:
            d = json.loads(backend.get(info.key))
            found.append(LeaseInfo(info.key, d["kind"], float(d["started"]), float(d["refreshed"]), float(d["ttl"])))
        except (ObjectNotFound, ValueError, KeyError):
            continue
    return found


class Lease:
    """A refreshed lease object: ``locks/lease-<uuid>`` (writers/readers) or ``locks/gc-<uuid>``.

    A daemon thread rewrites the object every ttl/4 seconds. :meth:`check` raises when
    refreshing has failed for longer than the ttl, because GC may then treat the session
    as dead and the session must not commit.
    """

    def __init__(self, backend: Backend, kind: str, ttl: float = DEFAULT_LEASE_TTL, name: str = "lease") -> None:
        self.backend = backend
        self.kind = kind
        self.ttl = ttl
        self.name = name
        self.key = f"{LOCK_PREFIX}{name}-{uuid.uuid4().hex}"
        self.started = time.time()
        self._last_ok = self.started
        self._stop = threading.Event()
        backend.put(self.key, _doc(kind, self.started, ttl))
        self._thread = threading.Thread(target=self._refresh_loop, name=f"bank-{name}-refresh", daemon=True)
        self._thread.start()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                self.backend.put(self.key, _doc(self.kind, self.started, self.ttl))
                self._last_ok = time.time()
            except Exception:  # a transient failure is retried next tick; check() reports a lapse
                continue

    def check(self) -> None:
        """Raise BankLockedError when the lease may have lapsed."""
        if time.time() - self._last_ok > self.ttl * 0.9:
            raise BankLockedError(f"lease {self.key} lapsed (not refreshed for {self.ttl:.0f}s); refusing to commit")

    def confirm_held(self) -> None:
        """Raise BankLockedError unless this lock is provably still ours, read back from the bank.

        Called right before a destructive step: a process paused past its ttl (or whose
        object was removed) may have lost the lock to another holder that saw it as dead.
        """
        self.check()
        try:
            doc = json.loads(self.backend.get(self.key))
            started = float(doc["started"])
        except (ObjectNotFound, ValueError, KeyError, TypeError):
            raise BankLockedError(f"lock {self.key} is no longer in the bank; refusing to continue") from None
        if started != self.started:
            raise BankLockedError(f"lock {self.key} was rewritten by another process; refusing to continue")
        others = [o for o in read_locks(self.backend, f"{self.name}-") if o.key != self.key and o.alive()]
        if others:
            raise BankLockedError(f"another holder took the lock ({others[0].key}); refusing to continue")

    def release(self) -> None:
        """Stop refreshing and delete the lease object."""
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.backend.delete(self.key)
        except Exception:
            pass  # an orphaned lease expires by itself after its ttl


def wait_for_gc(backend: Backend, timeout: float = 600.0, poll: float = 0.2) -> None:
    """Block while a live GC lock exists (call after writing one's own lease)."""
    deadline = time.time() + timeout
    while True:
        live = [lock for lock in read_locks(backend, "gc-") if lock.alive()]
        if not live:
            return
        if time.time() > deadline:
            raise BankLockedError(f"garbage collection holds the bank lock ({live[0].key}); try again later")
        time.sleep(poll)


def acquire_gc_lock(backend: Backend, ttl: float = DEFAULT_LEASE_TTL) -> Lease:
    """Take the exclusive GC lock or raise BankLockedError."""
    lock = Lease(backend, "gc", ttl, name="gc")
    others = [other for other in read_locks(backend, "gc-") if other.key != lock.key and other.alive()]
    if others:
        lock.release()
        raise BankLockedError(f"another garbage collection is running ({others[0].key})")
    return lock
