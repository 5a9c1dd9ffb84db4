import django_filters

from protection.models import OperationLog


class OperationLogFilterSet(django_filters.FilterSet):
    """Karbor's non-admin allow-list for operation logs."""

    class Meta:
        model = OperationLog
        fields = ["checkpoint_id", "plan_id", "restore_id", "status"]
