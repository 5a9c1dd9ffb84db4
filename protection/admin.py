from django.contrib import admin, messages

from karbor_site.errors import KarborError
from protection import services
from protection.verifications.services import verification_admin_action
from protection.models import BankGcRequest, Checkpoint, OperationLog, Quota, QuotaClass, Service, Verification


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
    # The catalog mirrors the bank and every status change goes through a guarded service
    # (the actions below): a hand-edited status, owner or plan would let a tenant see, restore
    # or delete data that is not theirs, or mark unfinished data available. Only extra_info
    # (free-form notes) stays editable.
    readonly_fields = [
        "id", "project_id", "provider_id", "plan_id", "status", "status_reason", "protection_plan",
        "resource_graph", "resources_status", "resources_reason", "saved_info", "bytes_done", "bytes_total",
        "items_done", "items_total", "heartbeat_at", "worker", "copy_of", "created_at", "updated_at", "deleted_at",
        "deleted",
    ]
    actions = ["delete_checkpoint", "verify_checkpoint"]

    def has_add_permission(self, request) -> bool:
        return False  # checkpoints come from the protect flow (or rebuild_catalog)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a row delete would orphan bank data: use the "delete checkpoint" action

    @admin.action(description="Delete checkpoint (data removed from the bank by the delete flow)")
    def delete_checkpoint(self, request, queryset):
        queued = 0
        for checkpoint in queryset:
            try:
                services.checkpoint_delete(checkpoint=checkpoint)
                queued += 1
            except KarborError as exc:
                self.message_user(request, f"{checkpoint}: {exc.message}", messages.ERROR)
        if queued:
            self.message_user(request, f"{queued} checkpoint(s) being deleted.", messages.SUCCESS)

    @admin.action(description="Verify checkpoint (re-read and check every chunk)")
    def verify_checkpoint(self, request, queryset):
        verification_admin_action(self, request, queryset)


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


@admin.register(BankGcRequest)
class BankGcRequestAdmin(admin.ModelAdmin):
    """Which banks wait for their batched garbage collection, and how the last one went (read-only)."""

    list_display = ["provider_id", "queued", "requested_at", "queued_at", "last_run_at", "last_error"]
    list_filter = ["queued"]
    search_fields = ["provider_id", "last_error"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
