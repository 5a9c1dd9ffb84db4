"""The heartbeat of a running flow's row (checkpoint, restore, verification).

A daemon thread refreshes ``heartbeat_at`` while a plugin call runs (one large file can take
minutes and report no progress in between), so the reaper can tell a slow flow from a dead
worker. Every write is guarded by the running status and the worker's own name: a row the
reaper already failed, or another worker holds, is never touched again.
"""
from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import Model
from django.utils import timezone

log = logging.getLogger(__name__)


class FlowHeartbeat:
    """Refresh ``heartbeat_at`` of one running row every ``interval`` seconds until the block ends.

    The thread uses its own database connection, so it is only started when the caller is
    not inside a transaction (a second connection could not see, and on SQLite would wait
    for, rows the caller has not committed — the case of tests running a flow in-process).
    """

    def __init__(
        self, *, model: type[Model], pk: str, status: str, worker: str, interval: float | None = None
    ) -> None:
        self.model, self.pk, self.status, self.worker = model, pk, status, worker
        self.interval = interval if interval is not None else float(settings.KARBOR_FLOW_HEARTBEAT_INTERVAL)
        self.beats = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> bool:
        """One guarded refresh; False when the row is no longer ours and running."""
        touched = self.model.all_objects.filter(pk=self.pk, status=self.status, worker=self.worker).update(
            heartbeat_at=timezone.now()
        )
        self.beats += touched
        return touched == 1

    def __enter__(self) -> FlowHeartbeat:
        if not connection.in_atomic_block:
            self._thread = threading.Thread(target=self._run, name=f"flow-heartbeat-{self.pk[:8]}", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    close_old_connections()
                    if not self.beat():
                        return  # finished, or failed by the reaper: nothing left to keep alive
                except Exception:  # noqa: BLE001 - a database hiccup must not kill the heartbeat
                    log.warning("heartbeat of %s %s failed; retrying", self.model.__name__, self.pk, exc_info=True)
        finally:
            connection.close()  # this thread's own connection

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
