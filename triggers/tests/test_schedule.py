"""The celery-beat rows the trigger services keep in step with triggers and their operations."""
import datetime as dt
import json

import pytest
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, PeriodicTask

from karbor_site.api.exceptions import NotFound
from triggers import services
from triggers.models import ScheduledOperation
from triggers.schedule import FIRE_TASK, celery_crontab_fields, periodic_task_name, sync_trigger_schedule
from triggers.tests.factories import WEEKLY, future, make_plan

pytestmark = pytest.mark.django_db


def create_trigger(project_id, **properties):
    props = {"format": "crontab", "pattern": "30 2 * * *", "window": "900"}
    props.update(properties)
    return services.trigger_create(project_id=project_id, name="t", type="time", properties=props)


def attach(trigger, plan, name="op"):
    return services.scheduled_operation_create(
        project_id=trigger.project_id,
        name=name,
        operation_type="protect",
        trigger_id=trigger.id,
        operation_definition={"provider_id": plan.provider_id, "plan_id": plan.id},
    )


def beat_row(trigger):
    return PeriodicTask.objects.filter(name=periodic_task_name(trigger.id)).first()


def test_trigger_without_operations_has_no_beat_entry(owner):
    assert beat_row(create_trigger(owner.project_id)) is None


def test_crontab_trigger_with_an_operation_gets_a_crontab_entry(owner):
    trigger = create_trigger(owner.project_id)
    attach(trigger, make_plan(owner.project_id))
    row = beat_row(trigger)
    assert row.task == FIRE_TASK
    assert json.loads(row.kwargs) == {"trigger_id": trigger.id}
    assert (row.crontab.minute, row.crontab.hour, row.crontab.day_of_week) == ("30", "2", "*")
    assert str(row.crontab.timezone) == "UTC"
    assert row.clocked is None and not row.one_off
    assert row.expire_seconds == 900 and row.expires is None
    assert row.start_time == trigger.start_time


def test_calendar_trigger_gets_a_one_off_clocked_entry_at_its_next_fire_time(owner):
    start = timezone.now().replace(microsecond=0) + dt.timedelta(hours=3)
    trigger = create_trigger(owner.project_id, format="calendar", pattern=WEEKLY, start_time=start.strftime("%Y-%m-%d %H:%M:%S"))
    attach(trigger, make_plan(owner.project_id))
    row = beat_row(trigger)
    assert row.crontab is None and row.one_off
    assert row.clocked.clocked_time == start


def test_cron_beyond_celerys_subset_or_with_end_time_uses_clocked(owner):
    assert celery_crontab_fields("0 2 1 * 1") is None  # cron ORs day-of-month and weekday; celery ANDs
    assert celery_crontab_fields("0 2 * * 7") is None
    assert celery_crontab_fields("0 2 * * mon") is None
    assert celery_crontab_fields("*/5 1-3 * 1,6 0-4") == {
        "minute": "*/5", "hour": "1-3", "day_of_month": "*", "month_of_year": "1,6", "day_of_week": "0-4",
    }
    trigger = create_trigger(owner.project_id, end_time=future(30))
    attach(trigger, make_plan(owner.project_id))
    row = beat_row(trigger)
    assert row.clocked is not None and row.crontab is None


def test_update_moves_the_entry_and_delete_of_last_operation_removes_it(owner):
    trigger = create_trigger(owner.project_id, format="calendar", pattern=WEEKLY)
    op = attach(trigger, make_plan(owner.project_id))
    first_clock = beat_row(trigger).clocked_id
    services.trigger_update(
        trigger=trigger,
        properties={"format": "crontab", "pattern": "0 4 * * *", "start_time": future(0)},
    )
    row = beat_row(trigger)
    assert row.crontab.hour == "4" and row.clocked is None
    assert not ClockedSchedule.objects.filter(pk=first_clock).exists()
    services.scheduled_operation_delete(operation=op)
    assert beat_row(trigger) is None


def test_entry_stays_while_another_operation_uses_the_trigger(owner):
    trigger = create_trigger(owner.project_id)
    plan = make_plan(owner.project_id)
    first, _second = attach(trigger, plan, "a"), attach(trigger, plan, "b")
    services.scheduled_operation_delete(operation=first)
    assert beat_row(trigger) is not None


def test_sync_removes_entry_when_the_trigger_will_not_fire_again(owner):
    trigger = create_trigger(owner.project_id, end_time=future(2))
    attach(trigger, make_plan(owner.project_id))
    assert beat_row(trigger) is not None
    assert sync_trigger_schedule(trigger.id, now=timezone.now() + dt.timedelta(days=3)) is None
    assert beat_row(trigger) is None
    assert ClockedSchedule.objects.count() == 0


def test_failed_operation_create_writes_no_beat_rows(owner, stranger):
    trigger = create_trigger(owner.project_id)
    with pytest.raises(NotFound):
        attach(trigger, make_plan(stranger.project_id))
    assert beat_row(trigger) is None and ScheduledOperation.all_objects.count() == 0


def test_trigger_with_a_corrupt_stored_pattern_gets_no_entry(owner):
    trigger = create_trigger(owner.project_id)
    attach(trigger, make_plan(owner.project_id))
    trigger.properties = {**trigger.properties, "pattern": "not cron"}
    trigger.save()
    assert sync_trigger_schedule(trigger.id) is None
    assert beat_row(trigger) is None
