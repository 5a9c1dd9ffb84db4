import json

from django.contrib import admin, messages
from django.core.exceptions import ImproperlyConfigured
from django.utils.html import format_html

from providers.models import Provider
from providers.services import providers_sync


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    """Read-only: providers are declared in YAML files; the list is refreshed from them on every view."""

    list_display = ["name", "id", "enabled", "bank_type", "bank_location", "bank_encrypted", "resource_types", "synced_at"]
    list_filter = ["enabled", "bank_type", "bank_encrypted"]
    search_fields = ["id", "name", "description", "resource_types", "source_file"]
    readonly_fields = [
        "id",
        "name",
        "description",
        "enabled",
        "bank_type",
        "bank_location",
        "bank_encrypted",
        "resource_types",
        "plugins",
        "schemas",
        "source_file",
        "synced_at",
    ]
    exclude = ["extended_info_schema"]

    def changelist_view(self, request, extra_context=None):
        try:
            providers_sync(reload_files=True)
        except ImproperlyConfigured as exc:
            self.message_user(request, f"Provider files are invalid; showing the last good state. {exc}", messages.ERROR)
        return super().changelist_view(request, extra_context)

    @admin.display(description="Extended info schema")
    def schemas(self, obj: Provider) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.extended_info_schema, indent=2, sort_keys=True))

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
