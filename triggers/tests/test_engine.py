"""The operation engine driven with explicit times: ticks, once-only runs, skips, re-arming, retention."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from plans.models import PlanStatus
from protection.models import Checkpoint, CheckpointStatus, Service
from protection.registry import OPERATION_ENGINE_BINARY
from protection.tests.flowkit import make_plan
from providers import testing as provider_testing
from triggers import engine, services
from triggers.models import RunState, ScheduledOperationLog
from triggers.schedule import periodic_task_prefix, resync_schedule_ensure, resync_unarmed_triggers, trigger_beat_entry
from triggers.timeparse import format_time

pytestmark = pytest.mark.django_db

fs_provider = provider_testing.fs_provider
provider_dir = provider_testing.provider_dir

UTC = dt.timezone.utc
START = dt.datetime(2030, 3, 4, 10, 0, tzinfo=UTC)  # a Monday


def at(minutes: float) -> dt.datetime:
    return START + dt.timedelta(minutes=minutes)


@pytest.fixture
def plan(owner, fs_provider):
    plan = make_plan(fs_provider)
    plan.status = PlanStatus.STARTED
    plan.save()
    return plan


def every_minute(project_id: str, **extra):
    props = {"format": "crontab", "pattern": "* * * * *", "start_time": format_time(START), "window": "60"}
    props.update(extra)
    return services.trigger_create(project_id=project_id, name="minutely", type="time", properties=props, now=START)


def schedule(trigger, plan, operation_type="protect", name="op", **definition):
    return services.scheduled_operation_create(
        project_id=trigger.project_id,
        name=name,
        operation_type=operation_type,
        trigger_id=trigger.id,
        operation_definition={"provider_id": plan.provider_id, "plan_id": plan.id, **definition},
    )


def checkpoints(plan):
    return list(Checkpoint.objects.filter(plan_id=plan.id).order_by("created_at"))


def test_a_tick_runs_each_operation_once_through_checkpoint_create_and_rearms(owner, plan, fs_provider):
    other_plan = make_plan(fs_provider, name="other")
    other_plan.status = PlanStatus.STARTED
    other_plan.save()
    trigger = every_minute(owner.project_id)
    first, second = schedule(trigger, plan, name="a"), schedule(trigger, other_plan, name="b")
    runs = engine.trigger_fire(trigger_id=trigger.id, fire_time=format_time(at(1)), now=at(1.1))
    assert {run.operation_id for run in runs} == {first.id, second.id}
    made = checkpoints(plan) + checkpoints(other_plan)
    assert len(made) == 2 and all(cp.status == CheckpointStatus.PROTECTING for cp in made)
    assert {cp.extra_info["scheduled_operation_id"] for cp in made} == {first.id, second.id}
    assert {cp.extra_info["created_by"] for cp in made} == {"operation-engine"}
    assert {run.checkpoint_id for run in runs} == {cp.id for cp in made}
    assert all(run.state == RunState.IN_PROGRESS for run in runs)
    # The same tick again (a second beat, a re-delivered message): nothing new.
    assert engine.trigger_fire(trigger_id=trigger.id, fire_time=format_time(at(1)), now=at(1.2)) == []
    assert len(checkpoints(plan) + checkpoints(other_plan)) == 2 and ScheduledOperationLog.objects.count() == 2
    # Re-armed at the next fire time the one evaluator (timeparse) gives.
    entry = trigger_beat_entry(trigger.id)
    assert entry.clocked.clocked_time == at(2)
    assert json.loads(entry.kwargs) == {"trigger_id": trigger.id, "fire_time": format_time(at(2))}


def test_an_operation_that_breaks_is_logged_failed_and_the_others_still_run(owner, plan, monkeypatch):
    from protection import services as protection_services

    trigger = every_minute(owner.project_id)
    broken, fine = schedule(trigger, plan, name="broken"), schedule(trigger, plan, name="fine")
    real = protection_services.checkpoint_create

    def checkpoint_create(**kwargs):
        if kwargs["scheduled_operation_id"] == broken.id:
            raise RuntimeError("database went away")
        return real(**kwargs)

    monkeypatch.setattr(protection_services, "checkpoint_create", checkpoint_create)
    runs = {run.operation_id: run for run in engine.trigger_fire(trigger_id=trigger.id, fire_time=at(1), now=at(1))}
    assert runs[broken.id].state == RunState.FAILED
    assert runs[broken.id].extend_info["reason"] == "RuntimeError: database went away"
    assert runs[fine.id].state == RunState.IN_PROGRESS and len(checkpoints(plan)) == 1
    assert trigger_beat_entry(trigger.id).clocked.clocked_time == at(2)


def test_the_api_shows_next_run_last_run_and_last_result(owner, plan):
    trigger = every_minute(owner.project_id)
    operation = schedule(trigger, plan)
    engine.trigger_fire(trigger_id=trigger.id, fire_time=at(1), now=at(1))
    body = owner.client.get(owner.url(f"scheduled_operations/{operation.id}")).json()["scheduled_operation"]
    assert body["last_run_at"] == format_time(at(1)) and body["last_result"] == "in_progress"
    assert body["next_run_at"] == format_time(trigger.next_fire_time(after=timezone.now()))


def test_a_tick_that_cannot_start_within_the_window_is_logged_skipped_never_run_late(owner, plan):
    trigger = every_minute(owner.project_id, window="120")
    operation = schedule(trigger, plan)
    runs = engine.trigger_fire(trigger_id=trigger.id, fire_time=at(1), now=at(3.5))
    assert [run.state for run in runs] == [RunState.SKIPPED]
    assert runs[0].extend_info["code"] == engine.SKIP_WINDOW and "window of 120 s" in runs[0].extend_info["reason"]
    assert checkpoints(plan) == []
    # Re-armed after now: the ticks missed meanwhile are not replayed.
    assert trigger_beat_entry(trigger.id).clocked.clocked_time == at(4)
    operation.state.refresh_from_db()
    assert operation.state.last_result == RunState.SKIPPED


def test_a_suspended_plan_is_not_protected_by_schedules_and_the_skip_is_logged(owner, plan):
    trigger = every_minute(owner.project_id)
    schedule(trigger, plan)
    plan.status = PlanStatus.SUSPENDED
    plan.save()
    [run] = engine.trigger_fire(trigger_id=trigger.id, fire_time=at(1), now=at(1))
    assert run.state == RunState.SKIPPED and run.extend_info["code"] == engine.SKIP_SUSPENDED
    assert checkpoints(plan) == []


def test_a_disabled_operation_engine_takes_no_new_work(owner, plan):
    trigger = every_minute(owner.project_id)
    schedule(trigger, plan)
    Service.objects.create(host="beat-1", binary=OPERATION_ENGINE_BINARY, topic="x", disabled=True)
    [run] = engine.trigger_fire(trigger_id=trigger.id, fire_time=timezone.now(), now=timezone.now())
    assert run.state == RunState.SKIPPED and run.extend_info["code"] == engine.SKIP_ENGINE_DISABLED
    assert checkpoints(plan) == []
    Service.objects.create(host="beat-2", binary=OPERATION_ENGINE_BINARY, topic="x", disabled=False)
    [run] = engine.trigger_fire(trigger_id=trigger.id, fire_time=timezone.now(), now=timezone.now())
    assert run.state == RunState.IN_PROGRESS and len(checkpoints(plan)) == 1


def test_a_trigger_past_its_end_time_stops(owner, plan):
    trigger = every_minute(owner.project_id, end_time=format_time(at(2)))
    schedule(trigger, plan)
    engine.trigger_fire(trigger_id=trigger.id, fire_time=at(1), now=at(1))
    assert trigger_beat_entry(trigger.id).clocked.clocked_time == at(2)
    settle(checkpoints(plan)[0].id, CheckpointStatus.AVAILABLE)
    engine.trigger_fire(trigger_id=trigger.id, fire_time=at(2), now=at(2))
    assert trigger_beat_entry(trigger.id) is None
    assert len(checkpoints(plan)) == 2


def test_a_calendar_trigger_is_rearmed_by_the_same_evaluator(owner, plan):
    props = {
        "format": "calendar", "pattern": "BEGIN:VEVENT\\nRRULE:FREQ=HOURLY;INTERVAL=2;\\nEND:VEVENT",
        "start_time": format_time(START), "window": "60",
    }
    trigger = services.trigger_create(project_id=owner.project_id, name="c", type="time", properties=props, now=START)
    schedule(trigger, plan)
    assert trigger_beat_entry(trigger.id).clocked.clocked_time == START
    engine.trigger_fire(trigger_id=trigger.id, fire_time=START, now=START)
    assert trigger_beat_entry(trigger.id).clocked.clocked_time == at(120)


def test_a_fire_without_a_named_tick_takes_the_latest_fire_time_within_the_window(owner, plan):
    trigger = every_minute(owner.project_id)
    schedule(trigger, plan)
    [run] = engine.trigger_fire(trigger_id=trigger.id, fire_time=None, now=at(5.5))
    assert run.expect_start_time == at(5)


def test_a_deleted_operation_or_trigger_does_not_run_and_loses_its_entry(owner, plan):
    trigger = every_minute(owner.project_id)
    operation = schedule(trigger, plan)
    services.scheduled_operation_delete(operation=operation)
    assert engine.trigger_fire(trigger_id=trigger.id, fire_time=at(1), now=at(1)) == []
    assert not PeriodicTask.objects.filter(name__startswith=periodic_task_prefix(trigger.id)).exists()
    assert checkpoints(plan) == []


def test_run_now_is_the_same_run_without_waiting_for_a_tick(owner, plan):
    trigger = every_minute(owner.project_id)
    operation = schedule(trigger, plan)
    run = engine.operation_run_now(operation=operation)
    assert run.state == RunState.IN_PROGRESS and run.extend_info == {"manual": True}
    assert [cp.id for cp in checkpoints(plan)] == [run.checkpoint_id]


def test_admin_run_now_action(admin_client, owner, plan):
    operation = schedule(every_minute(owner.project_id), plan)
    response = admin_client.post(
        "/admin/triggers/scheduledoperation/",
        {"action": "run_now", "_selected_action": [operation.id]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Started 1 run(s)" in response.content.decode()
    assert len(checkpoints(plan)) == 1
    listing = admin_client.get("/admin/triggers/scheduledoperation/").content.decode()
    assert "in_progress" in listing
    logs = admin_client.get("/admin/triggers/scheduledoperationlog/").content.decode()
    assert checkpoints(plan)[0].id in logs


# --- after the checkpoint: result and retention ------------------------------------------------


def settle(checkpoint_id: str, status: str, reason: str = "") -> None:
    Checkpoint.objects.filter(pk=checkpoint_id).update(status=status, status_reason=reason)


def old_checkpoint(plan, created_at: dt.datetime, status=CheckpointStatus.AVAILABLE) -> Checkpoint:
    return Checkpoint.objects.create(
        project_id=plan.project_id, provider_id=plan.provider_id, plan_id=plan.id, status=status, created_at=created_at,
    )


def test_the_legacy_single_entry_of_a_trigger_is_replaced_at_its_first_sync(owner, plan):
    trigger = every_minute(owner.project_id)
    schedule(trigger, plan)
    legacy = PeriodicTask.objects.create(
        name=f"karbor-trigger-{trigger.id}", task="karbor.triggers.fire", kwargs=json.dumps({"trigger_id": trigger.id}),
        interval=IntervalSchedule.objects.create(every=60, period="seconds"),
    )
    engine.trigger_fire(trigger_id=trigger.id, fire_time=None, now=at(1))
    assert not PeriodicTask.objects.filter(pk=legacy.pk).exists()
    assert trigger_beat_entry(trigger.id).clocked.clocked_time == at(2)


def test_a_trigger_whose_fire_message_was_lost_is_armed_again_by_the_sweep(owner, plan):
    trigger = every_minute(owner.project_id)
    schedule(trigger, plan)
    armed = every_minute(owner.project_id)
    schedule(armed, plan)
    PeriodicTask.objects.filter(name__startswith=periodic_task_prefix(trigger.id)).update(enabled=False)
    assert resync_unarmed_triggers(now=at(7.5)) == [trigger.id]
    assert trigger_beat_entry(trigger.id).clocked.clocked_time == at(8)
    assert resync_unarmed_triggers(now=at(7.5)) == []
    ensured = resync_schedule_ensure()
    assert resync_schedule_ensure().pk == ensured.pk and ensured.interval.every == 300


def test_the_protect_flow_hook_settles_the_run_at_once(owner, plan):
    operation = schedule(every_minute(owner.project_id), plan)
    run = engine.operation_run_now(operation=operation)
    settle(run.checkpoint_id, CheckpointStatus.AVAILABLE)
    engine.checkpoint_settled(checkpoint_id=run.checkpoint_id)
    run.refresh_from_db()
    assert run.state == RunState.SUCCESS


def test_run_finish_waits_for_the_checkpoint_then_records_the_result(owner, plan):
    trigger = every_minute(owner.project_id)
    operation = schedule(trigger, plan)
    [run] = engine.trigger_fire(trigger_id=trigger.id, fire_time=at(1), now=at(1))
    assert engine.run_finish(run_id=run.pk) is False
    settle(run.checkpoint_id, CheckpointStatus.ERROR, "disk full")
    assert engine.run_finish(run_id=run.pk) is True
    run.refresh_from_db()
    assert run.state == RunState.FAILED and run.extend_info["reason"] == "disk full"
    operation.state.refresh_from_db()
    assert operation.state.last_result == RunState.FAILED
    assert engine.run_finish(run_id=run.pk) is True  # a re-delivered message changes nothing


def test_retention_protect_keeps_exactly_max_backups_deleting_the_oldest_never_the_new_one(owner, plan):
    now = timezone.now()
    olds = [old_checkpoint(plan, now - dt.timedelta(hours=hours)) for hours in (5, 4, 3, 2)]
    in_progress = old_checkpoint(plan, now - dt.timedelta(hours=1), status=CheckpointStatus.ERROR)
    trigger = every_minute(owner.project_id)
    operation = schedule(trigger, plan, "retention_protect", max_backups="3")
    run = engine.operation_run_now(operation=operation)
    settle(run.checkpoint_id, CheckpointStatus.AVAILABLE)
    assert engine.run_finish(run_id=run.pk) is True
    run.refresh_from_db()
    assert run.state == RunState.SUCCESS
    assert run.extend_info["deleted_checkpoints"] == [olds[0].id, olds[1].id]  # oldest first
    states = {cp.id: cp.status for cp in Checkpoint.all_objects.filter(plan_id=plan.id)}
    assert states[olds[0].id] == states[olds[1].id] == CheckpointStatus.DELETING
    available = [cp for cp, status in states.items() if status == CheckpointStatus.AVAILABLE]
    assert sorted(available) == sorted([olds[2].id, olds[3].id, run.checkpoint_id])
    assert states[in_progress.id] == CheckpointStatus.ERROR  # only available ones count or go


def test_retention_of_one_never_deletes_the_checkpoint_just_made():
    now = START
    items = [("new", now - dt.timedelta(days=3)), ("newer-manual", now)]
    victims = engine.retention_victims(items, keep_id="new", policy=engine.RetentionPolicy(max_backups=1), now=now)
    assert victims == []


def test_retention_duration_deletes_what_is_older_than_the_days():
    now = START
    items = [(f"d{days}", now - dt.timedelta(days=days, minutes=1)) for days in (0, 1, 2, 3)]
    policy = engine.RetentionPolicy(retention_days=2)
    assert engine.retention_victims(items, keep_id="d0", policy=policy, now=now) == ["d3", "d2"]
    both = engine.RetentionPolicy(max_backups=2, retention_days=2)
    assert engine.retention_victims(items, keep_id="d0", policy=both, now=now) == ["d3", "d2"]
    count_only = engine.RetentionPolicy(max_backups=3)
    assert engine.retention_victims(items, keep_id="d0", policy=count_only, now=now) == ["d3"]


def test_gfs_keeps_the_newest_of_each_recent_day_week_and_month():
    # Four checkpoints a day (00, 06, 12, 18 h) for 70 days up to START.
    items = []
    for day in range(70):
        for hour in (0, 6, 12, 18):
            when = START.replace(hour=hour) - dt.timedelta(days=day)
            items.append((when.strftime("%m-%d %H"), when))
    newest = max(items, key=lambda item: item[1])[0]
    policy = engine.RetentionPolicy(keep_daily=3, keep_weekly=2, keep_monthly=2)
    victims = set(engine.retention_victims(items, keep_id=newest, policy=policy, now=START))
    kept = {checkpoint_id for checkpoint_id, _ in items} - victims
    daily = {"03-04 18", "03-03 18", "03-02 18"}
    weekly = {"03-04 18", "03-03 18"}  # ISO week of Mon 03-04, then the Sunday 03-03 closing the week before
    monthly = {"03-04 18", "02-28 18"}
    assert kept == daily | weekly | monthly | {newest}


def test_the_protect_flow_itself_settles_its_scheduled_run_when_it_ends(owner, plan):
    from protection.flows import checkpoint_protect_run

    operation = schedule(every_minute(owner.project_id), plan)
    run = engine.operation_run_now(operation=operation)
    assert run.state == RunState.IN_PROGRESS
    checkpoint_protect_run(checkpoint_id=run.checkpoint_id)
    run.refresh_from_db()
    assert Checkpoint.objects.get(pk=run.checkpoint_id).status == CheckpointStatus.AVAILABLE
    assert run.state == RunState.SUCCESS


def test_a_tick_while_the_plans_previous_checkpoint_still_protects_is_skipped_with_the_reason(owner, plan):
    trigger = every_minute(owner.project_id)
    schedule(trigger, plan)
    [first] = engine.trigger_fire(trigger_id=trigger.id, fire_time=at(1), now=at(1))
    [second] = engine.trigger_fire(trigger_id=trigger.id, fire_time=at(2), now=at(2))
    assert first.state == RunState.IN_PROGRESS
    assert second.state == RunState.SKIPPED and "being protected already" in second.extend_info["reason"]
    assert len(checkpoints(plan)) == 1
