from django.contrib import admin, messages

from karbor_site.errors import KarborError
from protection.admin import AllRowsAdmin
from restores import services
from restores.models import Restore, RestoreStatus


@admin.register(Restore)
class RestoreAdmin(AllRowsAdmin):
    list_display = ["id", "project_id", "checkpoint_id", "provider_id", "restore_target", "status", "worker", "created_at"]
    list_filter = ["status", "deleted"]
    search_fields = ["id", "project_id", "checkpoint_id", "provider_id", "restore_target", "worker"]
    readonly_fields = [
        "id", "project_id", "provider_id", "checkpoint_id", "restore_target", "parameters", "status",
        "resources_status", "resources_reason", "heartbeat_at", "worker", "created_at", "updated_at", "deleted_at",
    ]
    actions = ["restore_again", "mark_failed"]

    def has_add_permission(self, request) -> bool:
        # A restore is validated against its provider and checkpoint: start one with the API,
        # `manage.py restore` or the "restore again" action.
        return False

    @admin.action(description="Restore again (same checkpoint, target and parameters)")
    def restore_again(self, request, queryset) -> None:
        started = 0
        for restore in queryset:
            try:
                services.restore_create(
                    project_id=restore.project_id,
                    provider_id=restore.provider_id,
                    checkpoint_id=restore.checkpoint_id,
                    restore_target=restore.restore_target or None,
                    parameters=restore.parameters,
                    is_cloud_admin=True,
                )
                started += 1
            except KarborError as exc:
                self.message_user(request, f"{restore}: {exc.message}", messages.ERROR)
        if started:
            self.message_user(request, f"{started} restore(s) started.", messages.SUCCESS)

    @admin.action(description="Mark selected in-progress restores as failed")
    def mark_failed(self, request, queryset) -> None:
        failed = 0
        for restore in queryset.filter(status=RestoreStatus.IN_PROGRESS):
            failed += services.restore_fail(
                restore_id=restore.pk, reason=f"marked failed by operator {request.user.get_username()}"
            )
        self.message_user(request, f"{failed} restore(s) marked failed.", messages.SUCCESS)
