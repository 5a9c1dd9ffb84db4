from django.contrib import admin

from protection.models import Checkpoint, OperationLog, Quota, QuotaClass, Service, Verification


class AllRowsAdmin(admin.ModelAdmin):
    """Operators see soft-deleted rows too (filter on ``deleted``)."""

    def get_queryset(self, request):
        return self.model.all_objects.all()


@admin.register(Service)
class ServiceAdmin(AllRowsAdmin):
    list_display = ["id", "binary", "host", "topic", "disabled", "disabled_reason", "report_count", "modified_at"]
    list_filter = ["binary", "disabled", "deleted"]
    search_fields = ["host", "binary", "topic", "disabled_reason"]
    readonly_fields = ["report_count", "modified_at", "created_at", "updated_at"]


@admin.register(Checkpoint)
class CheckpointAdmin(AllRowsAdmin):
    list_display = ["id", "project_id", "plan_id", "provider_id", "status", "created_at", "bytes_done", "items_done"]
    list_filter = ["status", "provider_id", "deleted"]
    search_fields = ["id", "project_id", "plan_id", "status_reason"]
    readonly_fields = ["created_at", "updated_at", "deleted_at", "heartbeat_at"]


@admin.register(OperationLog)
class OperationLogAdmin(AllRowsAdmin):
    list_display = ["id", "operation_type", "project_id", "status", "checkpoint_id", "restore_id", "started_at", "ended_at"]
    list_filter = ["operation_type", "status"]
    search_fields = ["id", "project_id", "checkpoint_id", "plan_id", "restore_id", "error_info"]


@admin.register(Verification)
class VerificationAdmin(AllRowsAdmin):
    list_display = ["id", "project_id", "checkpoint_id", "provider_id", "status", "created_at"]
    list_filter = ["status"]
    search_fields = ["id", "project_id", "checkpoint_id"]


@admin.register(Quota)
class QuotaAdmin(AllRowsAdmin):
    list_display = ["project_id", "resource", "hard_limit", "deleted", "updated_at"]
    list_filter = ["resource", "deleted"]
    search_fields = ["project_id"]


@admin.register(QuotaClass)
class QuotaClassAdmin(AllRowsAdmin):
    list_display = ["class_name", "resource", "hard_limit", "deleted", "updated_at"]
    list_filter = ["resource", "deleted"]
    search_fields = ["class_name"]
