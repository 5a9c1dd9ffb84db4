"""Celery tasks of the protection app: thin wrappers around ``protection.flows`` and the reaper.

Arguments are ids only. Each flow claims its row with a guarded UPDATE, so a re-delivered
message (``acks_late``) for a checkpoint that is already running or finished returns quietly.
"""
from __future__ import annotations

import os

from celery import shared_task

PROTECT_TASK = "karbor.protection.checkpoint_protect"
DELETE_TASK = "karbor.protection.checkpoint_delete"
REAP_TASK = "karbor.protection.reap_dead_flows"
VERIFY_TASK = "karbor.protection.verification_run"


def _worker_name(task) -> str:
    hostname = getattr(task.request, "hostname", None) or os.uname().nodename
    return f"{hostname}:{os.getpid()}"


@shared_task(bind=True, name=PROTECT_TASK, acks_late=True, ignore_result=True)
def checkpoint_protect(self, checkpoint_id: str) -> None:
    """Run the protect flow of one checkpoint (see ``flows.checkpoint_protect_run``)."""
    from protection import flows

    flows.checkpoint_protect_run(checkpoint_id=checkpoint_id, worker=_worker_name(self))


@shared_task(bind=True, name=DELETE_TASK, acks_late=True, ignore_result=True)
def checkpoint_delete(self, checkpoint_id: str) -> None:
    """Run the delete flow of one checkpoint (see ``flows.checkpoint_delete_run``)."""
    from protection import flows

    flows.checkpoint_delete_run(checkpoint_id=checkpoint_id, worker=_worker_name(self))


@shared_task(name=REAP_TASK, acks_late=True, ignore_result=True)
def reap_dead_flows() -> dict:
    """Fail checkpoints, restores and verifications whose worker stopped heartbeating."""
    from protection import reaper

    return reaper.reap_dead_flows().as_dict()


@shared_task(bind=True, name=VERIFY_TASK, acks_late=True, ignore_result=True)
def verification_run_task(self, verification_id: str) -> str | None:
    """Run one verification. Idempotent: a re-delivered task for a finished or running one returns quietly."""
    from protection.verifications import verification_run

    verification = verification_run(verification_id=verification_id, worker=_worker_name(self))
    return verification.status if verification is not None else None
