"""Writes for triggers and scheduled operations: the one entry point for the API, admin and commands.

Every write ends with ``schedule.sync_trigger_schedule`` inside the same transaction, so the
celery-beat entry never disagrees with the committed trigger and its operations.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone

from karbor_site.errors import Conflict, InvalidInput, NotFound
from karbor_site.db import is_uuid_like
from plans.models import Plan
from triggers.models import OperationState, OperationType, ScheduledOperation, ScheduledOperationState, Trigger
from triggers.schedule import sync_trigger_schedule
from triggers.validation import operation_definition_clean, time_properties_clean, trigger_type_clean

TRIGGER_IN_USE = "Trigger is being used by one or more operations"
PROVIDER_CONFLICT = "Invalid operation definition, reason:Provider_id is conflict"


def _name_clean(name: Any, field: str = "name") -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput.for_field(field, "may not be blank")
    if len(name) > 255:
        raise InvalidInput.for_field(field, "Ensure this field has no more than 255 characters.")
    return name


def trigger_create(
    *,
    project_id: str,
    name: str,
    type: str,  # noqa: A002 - Karbor's field name
    properties: Mapping[str, Any],
    now: dt.datetime | None = None,
) -> Trigger:
    """Create a time trigger after validating its properties (see ``validation.time_properties_clean``)."""
    name = _name_clean(name)
    trigger_type_clean(type)
    cleaned = time_properties_clean(properties, now=now or timezone.now())
    with transaction.atomic():
        trigger = Trigger.objects.create(project_id=project_id, name=name, type=type, properties=cleaned)
        sync_trigger_schedule(trigger.id)
    return trigger


def trigger_update(
    *,
    trigger: Trigger,
    name: str | None = None,
    type: str | None = None,  # noqa: A002 - Karbor's field name
    properties: Mapping[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> Trigger:
    """Rename a trigger, set its type and/or replace its whole property set (which must then carry ``start_time``).

    A ``type`` is validated as on create and stored (Karbor's schema accepts it on update; only
    ``time`` exists, so an unknown type is a 400 and changes nothing). The new properties are
    validated as on create; the beat entry follows the new pattern.
    """
    if name is None and type is None and properties is None:
        raise InvalidInput.for_field("trigger_info", "nothing to update; give name, type and/or properties")
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = _name_clean(name)
    if type is not None:
        changes["type"] = trigger_type_clean(type)
    if properties is not None:
        changes["properties"] = time_properties_clean(properties, now=now or timezone.now(), require_start_time=True)
    with transaction.atomic():
        locked = _lock_trigger(trigger)
        for field, value in changes.items():
            setattr(locked, field, value)
        if changes:
            locked.save(update_fields=[*changes, "updated_at"])
        sync_trigger_schedule(locked.id)
    return locked


def trigger_delete(*, trigger: Trigger) -> None:
    """Soft-delete a trigger; refused with a 409 while a live scheduled operation uses it."""
    with transaction.atomic():
        locked = _lock_trigger(trigger)
        # The row lock makes this check and scheduled_operation_create's lookup mutually exclusive.
        if ScheduledOperation.objects.filter(trigger_id=locked.id).exists():
            raise Conflict(TRIGGER_IN_USE)
        locked.soft_delete()
        sync_trigger_schedule(locked.id)


def _lock_trigger(trigger: Trigger) -> Trigger:
    locked = Trigger.objects.select_for_update().filter(pk=trigger.pk).first()
    if locked is None:
        raise NotFound(f"Trigger {trigger.pk} could not be found.")
    return locked


def scheduled_operation_create(
    *,
    project_id: str,
    name: str,
    operation_type: str,
    trigger_id: str,
    operation_definition: Mapping[str, Any],
    description: str | None = None,
    user_id: str | None = None,
) -> ScheduledOperation:
    """Attach an operation (protect / retention_protect of one plan) to a trigger of the same project.

    The trigger and the plan must be live rows of ``project_id`` (else 404), and the definition's
    ``provider_id`` must be the plan's provider (else 400).
    """
    name = _name_clean(name)
    if description is not None and (not isinstance(description, str) or len(description) > 255):
        raise InvalidInput.for_field("description", "must be a string of at most 255 characters")
    if operation_type not in OperationType.values:
        raise InvalidInput(
            f"Invalid operation type: {operation_type}",
            fields={"operation_type": [f"must be one of: {', '.join(OperationType.values)}"]},
        )
    if not isinstance(trigger_id, str) or not is_uuid_like(trigger_id):
        raise InvalidInput.for_field("trigger_id", f"{trigger_id!r} is not a valid UUID")
    definition = operation_definition_clean(operation_definition, operation_type=operation_type)

    with transaction.atomic():
        trigger = Trigger.objects.select_for_update().filter(pk=trigger_id, project_id=project_id).first()
        if trigger is None:
            raise NotFound(f"Trigger {trigger_id} could not be found.", fields={"trigger_id": ["not found"]})
        plan = Plan.objects.filter(pk=definition["plan_id"], project_id=project_id).first()
        if plan is None:
            raise NotFound(
                f"Plan {definition['plan_id']} could not be found.",
                fields={"operation_definition.plan_id": ["not found"]},
            )
        if plan.provider_id != definition["provider_id"]:
            raise InvalidInput(
                PROVIDER_CONFLICT,
                fields={"operation_definition.provider_id": [f"must be the plan's provider {plan.provider_id}"]},
            )
        operation = ScheduledOperation.objects.create(
            project_id=project_id,
            user_id=user_id,
            name=name,
            description=description,
            operation_type=operation_type,
            trigger=trigger,
            operation_definition=definition,
            enabled=True,
        )
        ScheduledOperationState.objects.create(
            operation=operation, trigger_id=trigger.id, state=OperationState.REGISTERED
        )
        sync_trigger_schedule(trigger.id)
    return operation


def scheduled_operation_delete(*, operation: ScheduledOperation) -> None:
    """Soft-delete a scheduled operation; its trigger stops firing when no other operation uses it."""
    with transaction.atomic():
        locked = ScheduledOperation.objects.select_for_update().filter(pk=operation.pk).first()
        if locked is None:
            raise NotFound(f"Scheduled operation {operation.pk} could not be found.")
        locked.soft_delete()
        ScheduledOperationState.objects.filter(operation_id=locked.pk).update(
            state=OperationState.DELETED, updated_at=timezone.now()
        )
        sync_trigger_schedule(locked.trigger_id)
