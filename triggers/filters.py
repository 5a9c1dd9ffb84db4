"""List filters, as Karbor allows them to non-admins: regex on names and JSON text, exact on types and ids."""
from __future__ import annotations

import re

import django_filters
from django.db.models import QuerySet

from karbor_site.api.exceptions import InvalidInput
from triggers.models import ScheduledOperation, Trigger


def _regex(queryset: QuerySet, name: str, value: str) -> QuerySet:
    # A bad pattern must be a 400 here, not a database error when the query runs.
    try:
        re.compile(value)
    except re.error as exc:
        raise InvalidInput.for_field(name, f"not a valid regular expression: {exc}") from None
    return queryset.filter(**{f"{name}__regex": value})


class RegexFilter(django_filters.CharFilter):
    """Karbor matches these filters with the database's REGEXP operator."""

    def filter(self, qs: QuerySet, value: str) -> QuerySet:
        if value in ("", None):
            return qs
        return _regex(qs, self.field_name, value)


class TriggerFilterSet(django_filters.FilterSet):
    name = RegexFilter(help_text="Regular expression matched against the name.")
    properties = RegexFilter(help_text="Regular expression matched against the properties' JSON text.")
    type = django_filters.CharFilter(lookup_expr="exact")

    class Meta:
        model = Trigger
        fields = ["name", "properties", "type"]


class ScheduledOperationFilterSet(django_filters.FilterSet):
    name = RegexFilter(help_text="Regular expression matched against the name.")
    operation_definition = RegexFilter(help_text="Regular expression matched against the definition's JSON text.")
    operation_type = django_filters.CharFilter(lookup_expr="exact")
    trigger_id = django_filters.CharFilter(field_name="trigger_id", lookup_expr="exact")

    class Meta:
        model = ScheduledOperation
        fields = ["name", "operation_definition", "operation_type", "trigger_id"]
