"""List filters of the plans API: ``name``/``description`` are regular expressions, ``status`` exact."""
from __future__ import annotations

import django_filters

from karbor_site.api.regex_filter import RegexFilter
from plans.models import Plan


class PlanFilterSet(django_filters.FilterSet):
    name = RegexFilter(field_name="name", help_text="Regular expression matched against the name.")
    description = RegexFilter(field_name="description", help_text="Regular expression matched against the description.")
    status = django_filters.CharFilter(field_name="status", help_text="Exact status: suspended or started.")

    class Meta:
        model = Plan
        fields = ["name", "description", "status"]
