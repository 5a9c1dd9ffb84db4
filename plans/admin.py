from django.contrib import admin, messages

from karbor_site.errors import KarborError
from plans import services
from plans.models import Plan, PlanStatus, Resource


class ResourceInline(admin.TabularInline):
    model = Resource
    extra = 0
    fields = ["resource_type", "resource_id", "resource_name", "resource_extra_info"]
    readonly_fields = fields
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        # Resources are checked against the provider's instances by the plan services.
        return False


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["name", "id", "project_id", "provider_id", "status", "created_at", "updated_at"]
    list_filter = ["status", "provider_id", "deleted"]
    search_fields = ["id", "name", "description", "project_id", "provider_id", "resources__resource_id"]
    readonly_fields = ["id", "project_id", "provider_id", "status", "parameters", "created_at", "updated_at"]
    fields = ["id", "name", "description", "project_id", "provider_id", "status", "parameters", "created_at", "updated_at"]
    inlines = [ResourceInline]
    actions = ["start", "suspend", "protect_now"]

    def get_queryset(self, request):
        # Operators also see soft-deleted plans (filter on "deleted"); the API never does.
        return Plan.all_objects.all()

    def has_add_permission(self, request) -> bool:
        # A plan's resources must be validated against its provider: create plans through the API.
        return False

    def _set_status(self, request, queryset, status: str) -> None:
        changed = 0
        for plan in queryset:
            try:
                services.plan_update(project_id=plan.project_id, plan_id=plan.pk, status=status)
                changed += 1
            except KarborError as exc:
                self.message_user(request, f"{plan}: {exc.message}", messages.ERROR)
        if changed:
            self.message_user(request, f"{changed} plan(s) set to {status}.", messages.SUCCESS)

    @admin.action(description="Start selected plans")
    def start(self, request, queryset):
        self._set_status(request, queryset, PlanStatus.STARTED)

    @admin.action(description="Suspend selected plans")
    def suspend(self, request, queryset):
        self._set_status(request, queryset, PlanStatus.SUSPENDED)

    @admin.action(description="Protect now (create a checkpoint)")
    def protect_now(self, request, queryset):
        from protection.services import checkpoint_create

        created = []
        for plan in queryset:
            try:
                checkpoint = checkpoint_create(
                    project_id=plan.project_id, provider_id=plan.provider_id, plan_id=plan.pk,
                    extra_info={"requested_by": request.user.get_username()},
                )
                created.append(checkpoint.id)
            except KarborError as exc:
                self.message_user(request, f"{plan}: {exc.message}", messages.ERROR)
        if created:
            self.message_user(request, f"Protecting: checkpoint(s) {', '.join(created)}.", messages.SUCCESS)

    def save_model(self, request, obj, form, change):
        services.plan_update(
            project_id=obj.project_id, plan_id=obj.pk, name=obj.name, description=obj.description
        )

    def delete_model(self, request, obj):
        services.plan_delete(project_id=obj.project_id, plan_id=obj.pk)

    def delete_queryset(self, request, queryset):
        for plan in queryset:
            services.plan_delete(project_id=plan.project_id, plan_id=plan.pk)


@admin.register(Resource)
class ResourceAdmin(admin.ModelAdmin):
    list_display = ["resource_type", "resource_name", "resource_id", "plan", "deleted", "created_at"]
    list_filter = ["resource_type", "deleted"]
    search_fields = ["resource_id", "resource_name", "plan__id", "plan__name"]
    readonly_fields = ["plan", "resource_id", "resource_type", "resource_name", "resource_extra_info"]

    def get_queryset(self, request):
        return Resource.all_objects.select_related("plan")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
