"""Celery tasks of the runner that are not a kind's own: the reaper.

Each kind's task is built by ``operations.runner.register`` (named ``kind.task_name``).
"""
from __future__ import annotations

from celery import shared_task

from operations.reaper import REAP_TASK
from operations.reaper import reap_dead_flows as reap


@shared_task(name=REAP_TASK, acks_late=True, ignore_result=True)
def reap_dead_flows() -> dict:
    """Fail (or reconcile) the running rows of every kind whose worker stopped heartbeating."""
    return reap().as_dict()
