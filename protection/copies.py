"""Copy a plan's checkpoints into another provider's bank (Karbor's ``checkpoints/action`` copy).

``POST /v1/{project}/providers/{provider_id}/checkpoints/action`` with
``{"copy": {"plan_id": …, "parameters": {"destination_provider_id": …}}}``: for every
``available`` checkpoint of the plan in ``provider_id`` that the destination does not hold yet
(or the one named by ``parameters.checkpoint_id``), a new checkpoint row is created in the
destination provider, ``copying`` with ``copy_of`` = the source checkpoint, and the copy kind
runs it: the bank copy sends only the chunks the destination bank lacks (``Bank.copy_manifest_to``,
chunk ids mapped through the previous copy of the plan), and writes the manifest under the new
checkpoint's id with the new catalog fields, so ``rebuild_catalog`` recreates it from the
destination bank alone. The new checkpoint ends ``available`` with ``extra_info.copy_status =
"finished"`` (Karbor's marker), or ``error`` with the reason. The source cannot be deleted while
it is being copied (409), as for restores and verifications.

Karbor copied inside one provider; here the destination is another provider, named in the
parameters, since a copy into the same bank would add nothing (see docs/karbor-compat.md).
"""
from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from karbor_site.errors import InvalidInput, NotFound
from operations.kinds import Kind
from operations.runner import OperationFailed, Run, operation_create, operation_run, register
from plans.models import Plan
from protection.bank import BankError, Progress
from protection.banks import bank_for_provider
from protection.flows import checkpoint_from_manifest, checkpoint_meta
from protection.models import Checkpoint, CheckpointStatus
from protection.quotas import lock_project, quota_check
from protection.services import checkpoint_hold
from providers.registry import get_registry

log = logging.getLogger(__name__)

COPY = "copy"
COPY_FINISHED = "finished"
RESOURCE_COPYING = "copying"
DESTINATION = "destination_provider_id"


# --- request -------------------------------------------------------------------------------
def checkpoint_copy_create(
    *, project_id: str, provider_id: str, plan_id: Any, parameters: Any, enqueue: bool = True,
) -> dict[str, Any]:
    """Validate a copy request, create one ``copying`` checkpoint per checkpoint to copy, queue them.

    Returns Karbor's copy body (``checkpoint_id`` is a list of ``{checkpoint_protect_id,
    checkpoint_copy_id}`` pairs; empty when the destination holds every checkpoint already).
    Raises InvalidInput (400: a field named), NotFound (404), Conflict (409: the named checkpoint
    is not available), QuotaExceeded (413) or ServiceUnavailable (503); nothing is written then.
    """
    source = get_registry().get(provider_id)
    if not isinstance(parameters, dict):
        raise InvalidInput.for_field("copy.parameters", "must be an object")
    if not isinstance(plan_id, str) or not plan_id.strip():
        raise InvalidInput.for_field("copy.plan_id", "is required")
    destination_id = parameters.get(DESTINATION)
    if not isinstance(destination_id, str) or not destination_id.strip():
        raise InvalidInput.for_field(
            f"copy.parameters.{DESTINATION}", "is required: the provider whose bank receives the copies"
        )
    destination = get_registry().find(destination_id)
    if destination is None:
        raise NotFound(
            f"Provider {destination_id} could not be found.",
            fields={f"copy.parameters.{DESTINATION}": ["no such provider"]},
        )
    if destination.id == source.id:
        raise InvalidInput.for_field(
            f"copy.parameters.{DESTINATION}", "must be another provider than the one the checkpoints are in"
        )
    wanted = parameters.get("checkpoint_id")
    if wanted is not None and not isinstance(wanted, str):
        raise InvalidInput.for_field("copy.parameters.checkpoint_id", "must be a checkpoint id (a string)")
    unknown = sorted(set(parameters) - {DESTINATION, "checkpoint_id"})
    if unknown:
        raise InvalidInput.for_field(f"copy.parameters.{unknown[0]}", "is not a copy parameter")

    with transaction.atomic():
        lock_project(project_id)
        plan = Plan.objects.filter(project_id=project_id, pk=plan_id).first()
        if plan is None:
            raise NotFound(f"Plan {plan_id} could not be found.", fields={"copy.plan_id": ["no such plan"]})
        if plan.provider_id != source.id:
            raise InvalidInput.for_field(
                "copy.plan_id", f"the plan belongs to provider {plan.provider_id}, not {source.id}"
            )
        originals = Checkpoint.objects.filter(project_id=project_id, plan_id=plan.id, provider_id=source.id)
        if wanted is not None:
            originals = originals.filter(pk=wanted)
            if not originals.exists():
                raise NotFound(
                    f"Checkpoint {wanted} could not be found in plan {plan.id}.",
                    fields={"copy.parameters.checkpoint_id": ["no such checkpoint of this plan and provider"]},
                )
        elif not originals.exists():
            raise InvalidInput.for_field("copy.plan_id", "The plan has not been protected.")
        copied = set(Checkpoint.objects.filter(
            provider_id=destination.id, copy_of__in=originals.values("pk"),
            status__in=(CheckpointStatus.AVAILABLE, CheckpointStatus.COPYING),
        ).values_list("copy_of", flat=True))
        to_copy = []
        for original in originals.order_by("created_at"):
            if original.status != CheckpointStatus.AVAILABLE:
                if wanted is not None:
                    checkpoint_hold(checkpoint_id=original.pk)  # the 409 naming its status
                continue
            if original.pk not in copied:
                to_copy.append(original)
        if to_copy:
            quota_check(project_id=project_id, resource="checkpoints", adding=len(to_copy))
        pairs = []
        for original in to_copy:
            checkpoint_hold(checkpoint_id=original.pk)
            copy = _copy_row_create(original=original, destination_id=destination.id, enqueue=enqueue)
            pairs.append({"checkpoint_protect_id": original.pk, "checkpoint_copy_id": copy.pk})
    return {
        "project_id": project_id, "provider_id": source.id, "plan_id": plan.id,
        "checkpoint_id": pairs, "parameters": parameters,
    }


def _copy_row_create(*, original: Checkpoint, destination_id: str, enqueue: bool) -> Checkpoint:
    now = timezone.now()
    info = dict(original.extra_info or {})
    info.update(copy_status=RESOURCE_COPYING, copied_from={"provider_id": original.provider_id,
                                                            "checkpoint_id": original.pk})
    return operation_create(
        kind=COPY_KIND, enqueue=enqueue, project_id=original.project_id, provider_id=destination_id,
        plan_id=original.plan_id, copy_of=original.pk, protection_plan=original.protection_plan,
        resource_graph=original.resource_graph, saved_info=original.saved_info, extra_info=info,
        resources_status={}, resources_reason={}, created_at=now,
        log_values={"started_at": now, "extra_info": {"copy_of": original.pk,
                                                      "source_provider_id": original.provider_id}},
    )


# --- the copy kind ---------------------------------------------------------------------------
def _copy_key(row: Checkpoint) -> str:
    return f"checkpoint#{row.copy_of}"


def _copy_prepare(run: Run) -> list[tuple[str, Any]]:
    row: Checkpoint = run.row
    original = Checkpoint.all_objects.filter(pk=row.copy_of).first()
    if original is None or original.status != CheckpointStatus.AVAILABLE:
        status = original.status if original else "gone"
        raise OperationFailed(f"Copy failed: the source checkpoint {row.copy_of} is {status}, not available.")
    registry = get_registry()
    source, destination = registry.find(original.provider_id), registry.find(row.provider_id)
    if source is None or destination is None:
        missing = original.provider_id if source is None else row.provider_id
        raise OperationFailed(f"Copy failed: provider {missing} is no longer configured.")
    try:
        run.state.update(original=original, source=bank_for_provider(source), target=bank_for_provider(destination))
    except BankError as exc:
        raise OperationFailed(f"Copy failed: a bank cannot be opened: {exc}") from exc
    return [(_copy_key(row), original)]


def _copy_step(run: Run, original: Checkpoint) -> dict[str, Any]:
    row: Checkpoint = run.row
    finished = Checkpoint(
        id=row.pk, project_id=row.project_id, provider_id=row.provider_id, plan_id=row.plan_id,
        protection_plan=original.protection_plan, resource_graph=original.resource_graph,
        resources_status=original.resources_status, resources_reason={}, saved_info=original.saved_info,
        extra_info=_finished_extra_info(row), created_at=row.created_at,
        bytes_done=original.bytes_done, items_done=original.items_done,
    )
    run.state["finished"] = finished
    run.progress.on_progress(Progress(0, original.bytes_done or None, 0, None))
    report = run.state["source"].copy_manifest_to(
        run.state["target"], original.pk, target_id=row.pk, meta={"checkpoint": checkpoint_meta(finished)},
    )
    run.state["copied"] = True
    run.progress.on_progress(Progress(report.bytes, report.bytes, report.chunks, report.chunks))
    return {
        "bytes": report.bytes, "bytes_read": report.bytes_read, "bytes_new": report.bytes_new,
        "bytes_sent": report.bytes_sent, "chunks": report.chunks, "chunks_sent": report.chunks_sent,
        "chunks_reused": report.chunks_reused, "reference_id": report.reference_id, "seconds": report.seconds,
    }


def _finished_extra_info(row: Checkpoint) -> dict[str, Any]:
    return {**(row.extra_info or {}), "copy_status": COPY_FINISHED}


def _copy_commit(run: Run) -> dict[str, Any]:
    finished: Checkpoint = run.state["finished"]
    return {
        "resources_status": dict(finished.resources_status or {}), "resources_reason": {},
        "extra_info": finished.extra_info, "bytes_done": finished.bytes_done, "items_done": finished.items_done,
        "bytes_total": finished.bytes_done, "items_total": finished.items_done,
    }


def _copy_undo(run: Run) -> None:
    """The reaper failed the row after the bank copy: a manifest without its row must not stay."""
    try:
        run.state["target"].delete_manifest(run.row.pk)
    except BankError:
        log.warning("copy %s: manifest of a reaped copy could not be removed", run.row.pk, exc_info=True)


def _copy_cleanup(run: Run) -> None:
    # A copy that failed after its manifest was written (e.g. the finish itself failed) takes it back.
    if run.state.get("copied") and not Checkpoint.all_objects.filter(
        pk=run.row.pk, status=CheckpointStatus.AVAILABLE
    ).exists():
        _copy_undo(run)


def _copy_reconcile(row: Checkpoint) -> dict[str, Any] | None:
    values = checkpoint_from_manifest(row)
    if values is not None:
        values["extra_info"] = _finished_extra_info(row)
    return values


COPY_KIND = register(Kind(
    name="checkpoint_copy", label="Copy", model=Checkpoint, operation_type=COPY,
    task_name="karbor.protection.checkpoint_copy",
    running=CheckpointStatus.COPYING, success=CheckpointStatus.AVAILABLE, failure=CheckpointStatus.ERROR,
    resource_running=RESOURCE_COPYING, prepare=_copy_prepare, step=_copy_step, commit=_copy_commit,
    undo=_copy_undo, cleanup=_copy_cleanup, reconcile=_copy_reconcile,
    log_details=True, holds_checkpoint=True, holds_field="copy_of",
))


def checkpoint_copy_run(*, checkpoint_id: str, worker: str | None = None, echo=None) -> Checkpoint | None:
    """Run the copy into checkpoint ``checkpoint_id`` (a ``copying`` row) in this process."""
    return operation_run(kind=COPY_KIND, row_id=checkpoint_id, worker=worker, echo=echo)
