"""Celery tasks of the protection app.

The checkpoint protect and delete tasks are created by the runner when their kinds are
registered (``protection.flows``); they are re-exported here under their old names, with
the reaper's and the bank GC's, so the worker's autodiscovery finds them all.
"""
from __future__ import annotations

from operations.tasks import REAP_TASK, reap_dead_flows  # noqa: F401 - the worker registers it from here too
from protection.flows import DELETE_KIND, PROTECT_KIND
from protection.gc import GC_TASK, bank_gc  # noqa: F401
from protection.verifications.flows import VERIFY_KIND

PROTECT_TASK = PROTECT_KIND.task_name
DELETE_TASK = DELETE_KIND.task_name
VERIFY_TASK = VERIFY_KIND.task_name

checkpoint_protect = PROTECT_KIND.task
checkpoint_delete = DELETE_KIND.task
verification_run_task = VERIFY_KIND.task

