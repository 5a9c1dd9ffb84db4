from django.contrib import admin

from protection.admin import AllRowsAdmin
from restores.models import Restore


@admin.register(Restore)
class RestoreAdmin(AllRowsAdmin):
    list_display = ["id", "project_id", "checkpoint_id", "provider_id", "restore_target", "status", "created_at"]
    list_filter = ["status", "deleted"]
    search_fields = ["id", "project_id", "checkpoint_id", "provider_id", "restore_target"]
    readonly_fields = ["created_at", "updated_at", "deleted_at"]
