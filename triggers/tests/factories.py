"""Test data for triggers and scheduled operations."""
from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from plans.models import Plan
from triggers.models import ScheduledOperation, Trigger
from triggers.timeparse import format_time

NOOP_PROVIDER = "b766f37c-d011-4026-8228-28730d734a3f"
INFRA_PROVIDER = "cf56bd3e-97a7-4078-b6d5-f36246333fd9"
WEEKLY = "BEGIN:VEVENT\nRRULE:FREQ=WEEKLY;INTERVAL=1;\nEND:VEVENT"


def future(days: int = 1) -> str:
    return format_time(timezone.now() + dt.timedelta(days=days))


def trigger_body(name: str = "daily", **properties: Any) -> dict:
    props: dict[str, Any] = {"format": "crontab", "pattern": "0 2 * * *"}
    props.update(properties)
    return {"trigger_info": {"name": name, "type": "time", "properties": props}}


def make_plan(project_id: str, provider_id: str = NOOP_PROVIDER, name: str = "plan") -> Plan:
    return Plan.objects.create(name=name, provider_id=provider_id, project_id=project_id)


def make_trigger(project_id: str, name: str = "weekly", **properties: Any) -> Trigger:
    props = {"format": "calendar", "pattern": WEEKLY, "start_time": "2026-01-01 02:00:00", "window": "60"}
    props.update(properties)
    return Trigger.objects.create(project_id=project_id, name=name, type="time", properties=props)


def make_operation(project_id: str, trigger: Trigger, plan: Plan, name: str = "nightly") -> ScheduledOperation:
    return ScheduledOperation.objects.create(
        project_id=project_id,
        name=name,
        operation_type="protect",
        trigger=trigger,
        operation_definition={"provider_id": plan.provider_id, "plan_id": plan.id},
    )


def operation_body(trigger_id: str, plan: Plan, name: str = "nightly", **extra: Any) -> dict:
    definition = {"provider_id": plan.provider_id, "plan_id": plan.id}
    definition.update(extra.pop("definition", {}))
    body = {"name": name, "operation_type": "protect", "trigger_id": trigger_id, "operation_definition": definition}
    body.update(extra)
    return {"scheduled_operation": body}
