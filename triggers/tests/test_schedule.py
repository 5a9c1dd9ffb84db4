"""The celery-beat rows the trigger services keep in step with triggers and their operations."""
import datetime as dt
import json

import pytest
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, PeriodicTask

from karbor_site.errors import NotFound
from triggers import services
from triggers.models import ScheduledOperation
from triggers.schedule import BEAT_SETTLE, FIRE_TASK, periodic_task_prefix, sync_trigger_schedule, trigger_beat_entry
from triggers.timeparse import format_time
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
    return trigger_beat_entry(trigger.id)


def beat_rows(trigger):
    return PeriodicTask.objects.filter(name__startswith=periodic_task_prefix(trigger.id))


def test_trigger_without_operations_has_no_beat_entry(owner):
    assert beat_row(create_trigger(owner.project_id)) is None


def test_crontab_trigger_gets_a_clocked_entry_at_the_next_fire_time_timeparse_computes(owner):
    trigger = create_trigger(owner.project_id)
    attach(trigger, make_plan(owner.project_id))
    row = beat_row(trigger)
    expected = trigger.next_fire_time(after=timezone.now())
    assert (expected.hour, expected.minute) == (2, 30)
    assert row.task == FIRE_TASK
    assert json.loads(row.kwargs) == {"trigger_id": trigger.id, "fire_time": format_time(expected)}
    assert row.crontab is None and row.clocked.clocked_time == expected
    assert row.one_off and row.enabled
    # No expiry: a late tick must reach the engine to be logged as skipped and re-armed.
    assert row.expire_seconds is None and row.expires is None


def test_cron_that_celerys_crontab_reads_differently_fires_when_cron_says(owner):
    # cron ORs a restricted day-of-month and weekday (celery ANDs them): the 1st OR any Monday.
    trigger = create_trigger(owner.project_id, pattern="0 2 1 * 1", start_time="2030-01-02 00:00:00")
    attach(trigger, make_plan(owner.project_id))
    # 2030-01-07 is the first Monday after the start; the 1st of February comes later.
    assert beat_row(trigger).clocked.clocked_time == dt.datetime(2030, 1, 7, 2, 0, tzinfo=dt.timezone.utc)


def test_calendar_trigger_gets_a_clocked_entry_at_its_next_fire_time(owner):
    start = timezone.now().replace(microsecond=0) + dt.timedelta(hours=3)
    trigger = create_trigger(owner.project_id, format="calendar", pattern=WEEKLY, start_time=start.strftime("%Y-%m-%d %H:%M:%S"))
    attach(trigger, make_plan(owner.project_id))
    row = beat_row(trigger)
    assert row.crontab is None
    assert row.clocked.clocked_time == start


def test_rearming_arms_a_new_entry_and_drops_the_sent_one_once_beat_is_done_with_it(owner):
    trigger = create_trigger(owner.project_id)
    attach(trigger, make_plan(owner.project_id))
    first = beat_row(trigger)
    fired = first.clocked.clocked_time
    sync_trigger_schedule(trigger.id, now=fired)
    second = beat_row(trigger)
    assert second.pk != first.pk and second.clocked.clocked_time == fired + dt.timedelta(days=1)
    assert json.loads(second.kwargs)["fire_time"] == format_time(second.clocked.clocked_time)
    # Beat may still hold the sent entry in memory (it writes its run count back later): kept, disabled.
    first.refresh_from_db()
    assert not first.enabled
    assert set(beat_rows(trigger).values_list("pk", flat=True)) == {first.pk, second.pk}
    # Once beat is surely done with it, a later sync removes it and its clock.
    assert sync_trigger_schedule(trigger.id, now=fired + BEAT_SETTLE).pk == second.pk
    assert list(beat_rows(trigger)) == [second]
    assert not ClockedSchedule.objects.filter(pk=first.clocked_id).exists()


def test_update_moves_the_entry_and_delete_of_last_operation_removes_it(owner):
    trigger = create_trigger(owner.project_id, format="calendar", pattern=WEEKLY)
    op = attach(trigger, make_plan(owner.project_id))
    first_clock = beat_row(trigger).clocked_id
    services.trigger_update(
        trigger=trigger,
        properties={"format": "crontab", "pattern": "0 4 * * *", "start_time": future(0)},
    )
    row = beat_row(trigger)
    assert row.clocked.clocked_time.hour == 4
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
    assert beat_row(trigger) is None and not beat_rows(trigger).exists()
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
