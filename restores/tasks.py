"""Celery tasks of the restores app: the restore kind's task, built by the runner (``restores.flows``)."""
from __future__ import annotations

from restores.flows import RESTORE_KIND

RESTORE_TASK = RESTORE_KIND.task_name
restore_run_task = RESTORE_KIND.task
