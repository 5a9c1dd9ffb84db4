import django_filters

from karbor_site.api.viewsets import TRUE_STRINGS
from protection.models import Checkpoint, OperationLog


class OperationLogFilterSet(django_filters.FilterSet):
    """Karbor's non-admin allow-list for operation logs."""

    class Meta:
        model = OperationLog
        fields = ["checkpoint_id", "plan_id", "restore_id", "status"]


class CheckpointFilterSet(django_filters.FilterSet):
    """Karbor's checkpoint filters: ``plan_id``, ``start_date``/``end_date`` (``YYYY-MM-DD``, inclusive,
    on the creation date), ``project_id`` (only with a cloud admin's ``all_tenants``), and ``status``."""

    plan_id = django_filters.CharFilter(field_name="plan_id", help_text="Checkpoints of this plan.")
    start_date = django_filters.DateFilter(
        field_name="created_at", lookup_expr="date__gte", help_text="Created on or after (YYYY-MM-DD)."
    )
    end_date = django_filters.DateFilter(
        field_name="created_at", lookup_expr="date__lte", help_text="Created on or before (YYYY-MM-DD)."
    )
    project_id = django_filters.CharFilter(method="filter_project", help_text="With all_tenants (cloud admin).")
    status = django_filters.CharFilter(field_name="status", help_text="Exact status.")

    class Meta:
        model = Checkpoint
        fields = ["plan_id", "start_date", "end_date", "project_id", "status"]

    def filter_project(self, queryset, name, value):
        # Karbor: project_id changes the scope only for an admin who also passes all_tenants.
        request = self.request
        access = getattr(request, "access", None)
        all_tenants = (request.query_params.get("all_tenants", "") if request is not None else "").strip().lower()
        if value and access is not None and access.is_cloud_admin and all_tenants in TRUE_STRINGS:
            return queryset.filter(project_id=value)
        return queryset
