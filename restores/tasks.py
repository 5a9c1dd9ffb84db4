"""Celery tasks of the restores app: thin wrappers around the flow (ids only, JSON arguments)."""
from __future__ import annotations

import os

from celery import shared_task

from restores.flows import restore_run

RESTORE_TASK = "karbor.restores.restore_run"


def task_worker_name(task) -> str:
    """``<celery hostname>:<pid>``, the ``worker`` column of the row the task runs."""
    hostname = getattr(task.request, "hostname", None) or os.uname().nodename
    return f"{hostname}:{os.getpid()}"


@shared_task(bind=True, name=RESTORE_TASK, acks_late=True, ignore_result=True)
def restore_run_task(self, restore_id: str) -> str | None:
    """Run one restore. Idempotent: a re-delivered task for a finished or running restore returns quietly."""
    restore = restore_run(restore_id=restore_id, worker=task_worker_name(self))
    return restore.status if restore is not None else None
