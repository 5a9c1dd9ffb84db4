"""The columns every long-running row shares (checkpoints, restores, verifications, copies…).

Abstract: each concrete table keeps its own ``db_table``, its ``status`` column (with its own
choices) and its column names; these fields are declared once here, identically to what the
tables already have, so moving them here needed no migration.
"""
from __future__ import annotations

from django.db import models

from karbor_site.db import JSONTextField


class OperationRow(models.Model):
    """A row the runner claims, heartbeats, runs resource by resource and finishes.

    ``worker`` is empty until a worker claims the row; ``heartbeat_at`` is refreshed while it
    runs, so the reaper can tell a slow operation from a dead worker. ``resources_status`` /
    ``resources_reason`` are keyed ``"<type>#<id>"``; a reason that concerns no single resource
    is kept under ``"*"`` on rows without a ``status_reason`` column.
    """

    resources_status = JSONTextField(default=dict)
    resources_reason = JSONTextField(default=dict)
    # The running flow refreshes this; a stale heartbeat means its worker died.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        abstract = True
