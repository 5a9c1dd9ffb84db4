"""Operator views of triggers and scheduled operations.

Rows are created through the API (which validates patterns and ownership), so the admin shows
them read-only and changes them only through the same services: soft delete and beat re-sync.
"""
from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from karbor_site.errors import KarborError
from triggers import engine, services
from triggers.models import ScheduledOperation, ScheduledOperationLog, Trigger
from triggers.schedule import sync_trigger_schedule
from triggers.timeparse import format_time


class ReadOnlySoftDeleteAdmin(admin.ModelAdmin):
    """Shows soft-deleted rows too (filter on ``deleted``); no add, edit or hard delete."""

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return self.model.all_objects.all()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        # A hard delete would bypass the in-use check and leave beat entries behind.
        return False


@admin.register(Trigger)
class TriggerAdmin(ReadOnlySoftDeleteAdmin):
    list_display = ["name", "id", "project_id", "type", "time_format", "pattern", "next_fire", "deleted", "created_at"]
    list_filter = ["type", "deleted", "created_at"]
    search_fields = ["id", "name", "project_id", "properties"]
    readonly_fields = ["id", "name", "project_id", "type", "properties", "created_at", "updated_at", "deleted_at", "deleted"]
    actions = ["soft_delete", "resync_schedule"]

    @admin.display(description="format")
    def time_format(self, obj: Trigger) -> str:
        return (obj.properties or {}).get("format", "")

    @admin.display(description="pattern")
    def pattern(self, obj: Trigger) -> str:
        return (obj.properties or {}).get("pattern", "")

    @admin.display(description="next fire (UTC)")
    def next_fire(self, obj: Trigger) -> str:
        if obj.deleted:
            return "-"
        try:
            value = obj.next_fire_time(after=timezone.now())
        except ValueError:
            return "invalid pattern"
        return value.strftime("%Y-%m-%d %H:%M:%S") if value else "never"

    @admin.action(description="Delete selected triggers (refused while an operation uses one)")
    def soft_delete(self, request: HttpRequest, queryset: QuerySet) -> None:
        deleted = 0
        for trigger in queryset.filter(deleted=False):
            try:
                services.trigger_delete(trigger=trigger)
                deleted += 1
            except KarborError as exc:
                self.message_user(request, f"{trigger}: {exc.message}", messages.WARNING)
        self.message_user(request, f"Deleted {deleted} trigger(s).", messages.SUCCESS)

    @admin.action(description="Re-sync celery-beat entries")
    def resync_schedule(self, request: HttpRequest, queryset: QuerySet) -> None:
        active = sum(sync_trigger_schedule(trigger.id) is not None for trigger in queryset)
        self.message_user(request, f"Re-synced {queryset.count()} trigger(s); {active} scheduled in beat.", messages.SUCCESS)


@admin.register(ScheduledOperation)
class ScheduledOperationAdmin(ReadOnlySoftDeleteAdmin):
    list_display = [
        "name", "id", "project_id", "operation_type", "trigger", "enabled", "next_run", "last_run", "last_result",
        "deleted", "created_at",
    ]
    list_filter = ["operation_type", "enabled", "deleted", "created_at"]
    search_fields = ["id", "name", "project_id", "trigger__id", "trigger__name", "operation_definition"]
    list_select_related = ["trigger"]
    readonly_fields = [
        "id", "name", "description", "operation_type", "project_id", "user_id", "trigger",
        "operation_definition", "enabled", "next_run", "last_run", "last_result", "recent_runs",
        "created_at", "updated_at", "deleted_at", "deleted",
    ]
    actions = ["run_now", "soft_delete"]

    def _status(self, obj: ScheduledOperation) -> engine.OperationStatus:
        cache = self.__dict__.setdefault("_status_cache", {})
        key = (obj.pk, obj.updated_at)
        if key not in cache:
            cache.clear() if len(cache) > 1000 else None
            cache[key] = engine.operation_status(obj)
        return cache[key]

    @admin.display(description="next run (UTC)")
    def next_run(self, obj: ScheduledOperation) -> str:
        value = self._status(obj).next_run
        return format_time(value) if value else "-"

    @admin.display(description="last run (UTC)")
    def last_run(self, obj: ScheduledOperation) -> str:
        value = self._status(obj).last_run
        return format_time(value) if value else "-"

    @admin.display(description="last result")
    def last_result(self, obj: ScheduledOperation) -> str:
        return self._status(obj).last_result or "-"

    @admin.display(description="recent runs")
    def recent_runs(self, obj: ScheduledOperation) -> str:
        rows = ScheduledOperationLog.objects.filter(operation_id=obj.pk).order_by("-expect_start_time")[:20]
        lines = [
            f"{format_time(row.expect_start_time)}  {row.state}  {row.checkpoint_id or ''}  "
            f"{(row.extend_info or {}).get('reason', '')}"
            for row in rows
        ]
        return "\n".join(lines) or "-"

    @admin.action(description="Run now (protect the plan now, as the schedule would)")
    def run_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        started = 0
        for operation in queryset.filter(deleted=False):
            try:
                engine.operation_run_now(operation=operation)
            except KarborError as exc:
                self.message_user(request, f"{operation}: {exc.message}", messages.WARNING)
                continue
            started += 1
        self.message_user(request, f"Started {started} run(s).", messages.SUCCESS)

    @admin.action(description="Delete selected scheduled operations")
    def soft_delete(self, request: HttpRequest, queryset: QuerySet) -> None:
        deleted = 0
        for operation in queryset.filter(deleted=False):
            services.scheduled_operation_delete(operation=operation)
            deleted += 1
        self.message_user(request, f"Deleted {deleted} scheduled operation(s).", messages.SUCCESS)


@admin.register(ScheduledOperationLog)
class ScheduledOperationLogAdmin(ReadOnlySoftDeleteAdmin):
    """Every tick of every scheduled operation: run, skipped (and why), its checkpoint and what retention deleted."""

    list_display = ["operation", "expect_start_time", "state", "checkpoint_id", "actual_start_time", "end_time", "reason"]
    list_filter = ["state", "expect_start_time"]
    search_fields = ["operation__id", "operation__name", "checkpoint_id"]
    list_select_related = ["operation"]
    readonly_fields = [
        "operation", "expect_start_time", "triggered_time", "actual_start_time", "end_time", "state",
        "checkpoint_id", "extend_info", "created_at", "updated_at", "deleted_at", "deleted",
    ]

    @admin.display(description="reason")
    def reason(self, obj: ScheduledOperationLog) -> str:
        return (obj.extend_info or {}).get("reason", "")
