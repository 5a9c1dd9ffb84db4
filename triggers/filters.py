"""List filters, as Karbor allows them to non-admins: regex on names and JSON text, exact on types and ids."""
from __future__ import annotations

import django_filters

from karbor_site.api.regex_filter import RegexFilter
from triggers.models import ScheduledOperation, Trigger


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
