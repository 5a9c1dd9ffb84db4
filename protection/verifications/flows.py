"""The verify operation, declared as a kind of the runner.

A verification re-reads every chunk of every item of a checkpoint through each resource's
plugin (``verify``): fetched from the pack, authenticated/decrypted, decompressed and
re-hashed. Per resource ``resources_status`` is ``available`` or ``error`` (reason in
``resources_reason``, naming the damaged items); the verification ends ``success`` or
``fail``. The OperationLog row (``operation_type="verify"``) has the verification's id as
its own id, so the two are linked without a column (Karbor's verify logs carry no id).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from operations.kinds import Kind
from operations.runner import Run, operation_run, register
from protection.bank import Progress
from protection.banks import resource_prefix
from protection.flows import resource_key
from protection.models import Verification
from providers.plugins.base import Instance, PluginError, VerifyContext
from restores.flows import checkpoint_contents_prepare

IN_PROGRESS, SUCCESS, FAIL = "in_progress", "success", "fail"
VERIFYING = "verifying"


def _verify_step(run: Run, resource: Instance) -> dict[str, Any]:
    provider, contents, verification = run.state["provider"], run.state["contents"], run.row
    plugin = provider.plugins.get(resource.type)
    if plugin is None:
        raise PluginError(f"provider {provider.name} does not serve {resource.type}")
    return plugin.verify(VerifyContext(
        project_id=verification.project_id, resource=resource,
        saved_info=contents.saved_info.get(resource_key(resource.type, resource.id)) or {}, bank=contents.bank,
        checkpoint_id=verification.checkpoint_id, prefix=resource_prefix(resource.type, resource.id),
        on_progress=run.progress.on_progress,
    )) or {}


VERIFY_KIND = register(Kind(
    name="verify", label="Verification", model=Verification, operation_type="verify",
    task_name="karbor.protection.verification_run",
    running=IN_PROGRESS, success=SUCCESS, failure=FAIL, resource_running=VERIFYING,
    prepare=checkpoint_contents_prepare, step=_verify_step, log_key="id", log_details=True, holds_checkpoint=True,
))


def verification_run(
    *, verification_id: str, worker: str | None = None, on_progress: Callable[[Progress], None] | None = None
) -> Verification | None:
    """Run one verification to its end (idempotent: a finished or foreign-held one is returned untouched)."""
    return operation_run(kind=VERIFY_KIND, row_id=verification_id, worker=worker, echo=on_progress)
