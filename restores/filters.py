"""List filters of the restores API: ``status`` for everyone; the rest only for the cloud operator."""
from __future__ import annotations

import django_filters

from restores.models import Restore


class AdminOnlyFilter(django_filters.CharFilter):
    """Karbor drops filter keys outside a resource's allow-list for non-admins, silently."""

    def filter(self, qs, value):
        access = getattr(getattr(self.parent, "request", None), "access", None)
        if access is None or not access.is_cloud_admin:
            return qs
        return super().filter(qs, value)


class RestoreFilterSet(django_filters.FilterSet):
    status = django_filters.CharFilter(field_name="status", help_text="Exact status: in_progress, success or fail.")
    project_id = AdminOnlyFilter(field_name="project_id", help_text="Cloud admins with all_tenants: one project.")
    checkpoint_id = AdminOnlyFilter(field_name="checkpoint_id", help_text="Cloud admins: restores of one checkpoint.")
    provider_id = AdminOnlyFilter(field_name="provider_id", help_text="Cloud admins: restores of one provider.")

    class Meta:
        model = Restore
        fields = ["status", "project_id", "checkpoint_id", "provider_id"]
