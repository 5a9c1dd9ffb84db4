"""The restore operation, declared as a kind of the runner: bring every resource of a checkpoint back.

``operations.runner`` claims the ``in_progress`` row (a re-delivered task returns quietly),
heartbeats, records progress and finishes it guarded by status and worker (a row the
reaper already failed stays failed). This module says what restoring means:

* prepare: read the checkpoint's manifest from the provider's bank (manifest id =
  checkpoint id, meta ``{"checkpoint": {...}}``): its resources, saved info and totals;
* step: ``plugin.restore(RestoreContext(...))`` under ``resource_prefix``; the resource's
  ``resources_status`` entry goes ``restoring`` → ``available`` | ``error`` with its reason.

The row ends ``success`` when every resource is ``available``, else ``fail``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from operations.kinds import Kind
from operations.runner import Run, operation_run, register
from protection.bank import Progress
from protection.banks import resource_prefix
from protection.flows import plan_parameters_for, resource_key
from providers.plugins.base import Instance, PluginError, RestoreContext
from providers.registry import get_registry
from restores.models import Restore, RestoreStatus
from restores.selectors import checkpoint_contents

RESTORING = "restoring"
AVAILABLE = "available"


def checkpoint_contents_prepare(run: Run) -> list[tuple[str, Instance]]:
    """``prepare`` of the kinds that read a checkpoint (restore, verify): its contents, totals, resources."""
    provider = get_registry().get(run.row.provider_id)
    contents = checkpoint_contents(provider=provider, checkpoint_id=run.row.checkpoint_id)
    run.state.update(provider=provider, contents=contents)
    run.progress.set_totals(bytes_total=contents.bytes_total, items_total=contents.items_total)
    return [(resource_key(r.type, r.id), r) for r in contents.resources]


def _restore_step(run: Run, resource: Instance) -> dict[str, Any]:
    provider, contents, restore = run.state["provider"], run.state["contents"], run.row
    key = resource_key(resource.type, resource.id)
    plugin = provider.plugins.get(resource.type)
    if plugin is None:
        raise PluginError(f"provider {provider.name} does not serve {resource.type}")
    if contents.protected.get(key, AVAILABLE) != AVAILABLE:
        raise PluginError(f"the resource was not protected in this checkpoint ({contents.protected.get(key)})")
    return plugin.restore(RestoreContext(
        project_id=restore.project_id, resource=resource, saved_info=contents.saved_info.get(key, {}),
        parameters=plan_parameters_for(restore.parameters or {}, resource.type, resource.id), bank=contents.bank,
        checkpoint_id=restore.checkpoint_id, prefix=resource_prefix(resource.type, resource.id),
        target=restore.restore_target or None, on_progress=run.progress.on_progress,
    )) or {}


RESTORE_KIND = register(Kind(
    name="restore", label="Restore", model=Restore, operation_type="restore", task_name="karbor.restores.restore_run",
    running=RestoreStatus.IN_PROGRESS, success=RestoreStatus.SUCCESS, failure=RestoreStatus.FAIL,
    resource_running=RESTORING, prepare=checkpoint_contents_prepare, step=_restore_step,
    log_key="restore_id", log_details=True, holds_checkpoint=True,
))


def restore_run(
    *, restore_id: str, worker: str | None = None, on_progress: Callable[[Progress], None] | None = None
) -> Restore | None:
    """Run one restore to its end (idempotent: a finished or foreign-held restore is returned untouched)."""
    return operation_run(kind=RESTORE_KIND, row_id=restore_id, worker=worker, echo=on_progress)
