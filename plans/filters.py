"""List filters of the plans API: ``name``/``description`` are regular expressions, ``status`` exact."""
from __future__ import annotations

import re

import django_filters

from karbor_site.api.exceptions import InvalidInput
from plans.models import Plan


class RegexFilter(django_filters.CharFilter):
    """Karbor matches these filters as regular expressions; a bad pattern is the caller's 400, not a 500."""

    def filter(self, qs, value):
        if value in (None, ""):
            return qs
        try:
            re.compile(value)
        except re.error as exc:
            raise InvalidInput.for_field(self.field_name, f"invalid regular expression: {exc}") from None
        return qs.filter(**{f"{self.field_name}__regex": value})


class PlanFilterSet(django_filters.FilterSet):
    name = RegexFilter(field_name="name", help_text="Regular expression matched against the name.")
    description = RegexFilter(field_name="description", help_text="Regular expression matched against the description.")
    status = django_filters.CharFilter(field_name="status", help_text="Exact status: suspended or started.")

    class Meta:
        model = Plan
        fields = ["name", "description", "status"]
