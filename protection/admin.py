from django.contrib import admin

from protection.models import Service


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ["id", "binary", "host", "topic", "disabled", "disabled_reason", "report_count", "updated_at"]
    list_filter = ["binary", "disabled", "deleted"]
    search_fields = ["host", "binary", "topic", "disabled_reason"]
    readonly_fields = ["report_count", "modified_at", "created_at", "updated_at"]

    def get_queryset(self, request):
        return Service.all_objects.all()
