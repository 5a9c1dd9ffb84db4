"""Plumbing shared by the restore and verify flows (the heartbeat is ``protection.heartbeats``).

* ``ProgressRecorder`` writes bytes/items done/total to the flow's OperationLog row at most
  every KARBOR_PROGRESS_INTERVAL seconds (and always at the end).
"""
from __future__ import annotations

import logging
import os
import socket
import time

from django.conf import settings

from protection.models import OperationLog

log = logging.getLogger(__name__)
IN_PROGRESS = "in_progress"


def worker_name(kind: str = "worker") -> str:
    """``<kind>@<host>:<pid>``: who runs a flow, as stored in the row's ``worker`` column."""
    return f"{kind}@{socket.gethostname()}:{os.getpid()}"[:255]


class ProgressRecorder:
    """Aggregate progress over the resources of one flow and write it, throttled, to its log row.

    ``on_progress`` goes to the plugins (bank ``Progress`` objects of the current resource);
    ``resource_done`` moves the base on to the next resource. ``extra`` is an optional callback
    (the management command's progress bar) that sees every update unthrottled.
    """

    def __init__(self, log_id: str, *, bytes_total: int | None, items_total: int | None, extra=None) -> None:
        self.log_id = log_id
        self.bytes_total, self.items_total = bytes_total, items_total
        self.base_bytes = self.base_items = 0
        self.bytes_done = self.items_done = 0
        self.extra = extra
        self.interval = float(getattr(settings, "KARBOR_PROGRESS_INTERVAL", 1))
        self._last = 0.0

    def on_progress(self, progress) -> None:
        self.bytes_done = self.base_bytes + int(progress.bytes_done or 0)
        self.items_done = self.base_items + int(progress.items_done or 0)
        if self.extra is not None:
            self.extra(self)
        now = time.monotonic()
        if now - self._last >= self.interval:
            self.flush()

    def resource_done(self) -> None:
        self.base_bytes, self.base_items = self.bytes_done, self.items_done
        self.flush()

    def totals(self) -> tuple[int | None, int | None]:
        bytes_total = None if self.bytes_total is None else max(self.bytes_total, self.bytes_done)
        items_total = None if self.items_total is None else max(self.items_total, self.items_done)
        return bytes_total, items_total

    def flush(self) -> None:
        self._last = time.monotonic()
        bytes_total, items_total = self.totals()
        OperationLog.objects.filter(pk=self.log_id).update(
            bytes_done=self.bytes_done, items_done=self.items_done, bytes_total=bytes_total, items_total=items_total
        )
