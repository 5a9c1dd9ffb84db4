"""Writes of verifications: request one (validated synchronously, run by a worker), the admin action."""
from __future__ import annotations

import logging
from typing import Any

from django.contrib import admin, messages
from django.db import transaction

from karbor_site.errors import InvalidInput, KarborError
from operations.runner import operation_create
from protection.models import OperationLog, Verification
from protection.services import checkpoint_hold
from protection.verifications.flows import VERIFY_KIND
from providers.registry import get_registry
from restores.selectors import checkpoint_for_operation, checkpoint_resources_required

log = logging.getLogger(__name__)

NO_PARAMETERS = "verifications take no parameters (providers publish no verify schema)"


def verification_create(
    *,
    project_id: str,
    provider_id: str,
    checkpoint_id: str,
    parameters: dict[str, Any] | None = None,
    is_cloud_admin: bool = False,
    enqueue: bool = True,
) -> Verification:
    """Validate, then create an ``in_progress`` verification and its operation log; a worker runs it.

    Raises NotFound (provider, checkpoint), Conflict (checkpoint not available) or InvalidInput
    (non-empty parameters: there is no verify schema, Karbor stored those as ``fail``).
    """
    if parameters:
        raise InvalidInput.for_field("parameters", NO_PARAMETERS)
    provider = get_registry().get(provider_id)
    checkpoint = checkpoint_for_operation(
        project_id=project_id, provider_id=provider.id, checkpoint_id=checkpoint_id, is_cloud_admin=is_cloud_admin
    )
    checkpoint_resources_required(checkpoint, action="verify")
    with transaction.atomic():
        checkpoint_hold(checkpoint_id=checkpoint.id)
        verification = operation_create(
            kind=VERIFY_KIND, enqueue=enqueue, project_id=project_id, provider_id=provider.id,
            checkpoint_id=checkpoint.id, parameters={}, resources_status={}, resources_reason={},
            log_values={"plan_id": checkpoint.plan_id},
        )
        # The log shares the verification's id; extra_info names it too for readers of the log alone.
        OperationLog.objects.filter(pk=verification.id).update(extra_info={"verification_id": verification.id})
    return verification


# --- admin -------------------------------------------------------------------------------
@admin.action(description="Verify selected checkpoints (re-read every byte)")
def verification_admin_action(modeladmin, request, queryset) -> None:
    """For ``CheckpointAdmin.actions``: one verification per selected checkpoint, run by a worker."""
    started = 0
    for checkpoint in queryset:
        try:
            verification_create(
                project_id=checkpoint.project_id,
                provider_id=checkpoint.provider_id,
                checkpoint_id=checkpoint.pk,
                is_cloud_admin=True,
            )
            started += 1
        except KarborError as exc:
            modeladmin.message_user(request, f"{checkpoint}: {exc.message}", messages.ERROR)
    if started:
        modeladmin.message_user(request, f"{started} verification(s) started.", messages.SUCCESS)
