"""The one progress recorder of a running operation.

Plugins report a bank ``Progress`` for the resource they work on; the recorder adds up the
resources done so far, writes bytes and items (done and total) to the operation log row —
and to the operation's own row when it has progress columns (checkpoints) — at most every
KARBOR_PROGRESS_INTERVAL seconds, and always when a resource ends. ``echo`` (a management
command's progress bar) sees every update, unthrottled.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.db.models import Model
from django.utils import timezone

from protection.bank import Progress
from protection.models import OperationLog

PROGRESS_FIELDS = ("bytes_done", "bytes_total", "items_done", "items_total")


class ProgressRecorder:
    """Progress of one operation over its resources.

    ``bytes_total``/``items_total`` are the whole operation's when known up front (a restore
    reads them from the manifest); otherwise each resource's own totals are added up as it ends.
    """

    def __init__(
        self, *, log_id: str | None, row_model: type[Model] | None = None, row_id: str | None = None,
        worker: str = "", bytes_total: int | None = None, items_total: int | None = None,
        echo: Callable[[Progress], None] | None = None, interval: float | None = None,
    ) -> None:
        self.log_id, self.row_model, self.row_id, self.worker = log_id, row_model, row_id, worker
        self.echo = echo
        self.interval = float(settings.KARBOR_PROGRESS_INTERVAL if interval is None else interval)
        self.fixed_totals = (bytes_total, items_total)
        self.done = Progress(0, 0, 0, 0)  # resources finished so far
        self.current = Progress(0, None, 0, None)
        self._last_write = 0.0

    def set_totals(self, *, bytes_total: int | None, items_total: int | None) -> None:
        self.fixed_totals = (bytes_total, items_total)

    def on_progress(self, progress: Progress) -> None:
        self.current = progress
        if self.echo is not None:
            self.echo(self.totals())
        if time.monotonic() - self._last_write >= self.interval:
            self.write()

    def resource_done(self) -> None:
        current, done = self.current, self.done
        self.done = Progress(
            done.bytes_done + current.bytes_done, done.bytes_total + (current.bytes_total or current.bytes_done),
            done.items_done + current.items_done, done.items_total + (current.items_total or current.items_done),
        )
        self.current = Progress(0, None, 0, None)
        self.write()

    def totals(self) -> Progress:
        current, done = self.current, self.done
        bytes_done, items_done = done.bytes_done + current.bytes_done, done.items_done + current.items_done
        bytes_total, items_total = self.fixed_totals
        if bytes_total is not None:
            bytes_total = max(bytes_total, bytes_done)
        elif current.bytes_total is not None:
            bytes_total = done.bytes_total + current.bytes_total
        if items_total is not None:
            items_total = max(items_total, items_done)
        elif current.items_total is not None:
            items_total = done.items_total + current.items_total
        return Progress(bytes_done, bytes_total, items_done, items_total)

    def values(self) -> dict[str, int | None]:
        totals = self.totals()
        return {name: getattr(totals, name) for name in PROGRESS_FIELDS}

    def write(self) -> None:
        self._last_write = time.monotonic()
        values = self.values()
        if self.row_model is not None:
            now = timezone.now()
            self.row_model.all_objects.filter(pk=self.row_id, worker=self.worker).update(
                **values, heartbeat_at=now, updated_at=now
            )
        if self.log_id:
            OperationLog.all_objects.filter(pk=self.log_id, ended_at__isnull=True).update(**values)
