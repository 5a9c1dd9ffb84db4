"""Input and output shapes of the trigger and scheduled-operation API (Karbor v1, §2.7–2.8)."""
from __future__ import annotations

from typing import Any

from rest_framework import serializers

from karbor_site.api.viewsets import StrictInputSerializer
from triggers.engine import OperationStatus, operation_status
from triggers.models import ScheduledOperation, Trigger
from triggers.timeparse import format_time


class StrictCharField(serializers.CharField):
    """A string that really is a JSON string (DRF's CharField would turn ``12`` into ``"12"``)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError(f"must be a string, got {type(data).__name__}")
        return super().to_internal_value(data)


def _not_only_whitespace(value: str) -> None:
    if value is not None and not value.strip():
        raise serializers.ValidationError("may not be blank")


class PropertiesField(serializers.DictField):
    """The time-trigger properties; the values are checked by ``validation.time_properties_clean``."""

    def __init__(self, **kwargs):
        super().__init__(child=serializers.JSONField(), **kwargs)


# --- triggers ---------------------------------------------------------------------------
class TriggerCreateSerializer(StrictInputSerializer):
    name = StrictCharField(max_length=255, trim_whitespace=False, validators=[_not_only_whitespace])
    type = StrictCharField(max_length=64, help_text="Only `time` exists.")
    properties = PropertiesField(
        help_text="`format` (crontab|calendar) and `pattern` are required; `start_time`, `end_time` "
        "(`YYYY-MM-DD HH:MM:SS` UTC) and `window` (seconds, int or numeric string) are optional."
    )


class TriggerUpdateSerializer(StrictInputSerializer):
    name = StrictCharField(max_length=255, trim_whitespace=False, validators=[_not_only_whitespace], required=False)
    type = StrictCharField(max_length=64, required=False)
    properties = PropertiesField(
        required=False, help_text="Replaces the whole property set; must include `start_time`."
    )


class TriggerSerializer(serializers.ModelSerializer):
    """Karbor's trigger view; every property value is a string."""

    properties = serializers.SerializerMethodField()

    class Meta:
        model = Trigger
        fields = ["id", "name", "type", "properties"]

    def get_properties(self, obj: Trigger) -> dict[str, str]:
        return {key: str(value) for key, value in (obj.properties or {}).items()}


# --- scheduled operations -----------------------------------------------------------------
class ScheduledOperationCreateSerializer(StrictInputSerializer):
    name = StrictCharField(max_length=255, trim_whitespace=False, validators=[_not_only_whitespace])
    description = StrictCharField(max_length=255, required=False, allow_null=True, allow_blank=True, trim_whitespace=False)
    operation_type = StrictCharField(max_length=64, help_text="`protect` or `retention_protect`.")
    trigger_id = StrictCharField(max_length=36)
    operation_definition = serializers.DictField(
        child=serializers.JSONField(),
        help_text="`provider_id` and `plan_id` (UUIDs) are required; `max_backups` and "
        "`retention_duration` (days) and `keep_daily` / `keep_weekly` / `keep_monthly` / `keep_yearly` "
        "(integers ≥ 1, each optional) apply to retention_protect only.",
    )


class ScheduledOperationSerializer(serializers.ModelSerializer):
    """Karbor's scheduled-operation view (definition values are strings), plus the engine's view of it:
    ``next_run_at`` (the trigger's next fire time), ``last_run_at`` and ``last_result``
    (``in_progress``, ``success``, ``failed`` or ``skipped``), times as ``YYYY-MM-DD HH:MM:SS`` UTC or null."""

    trigger_id = serializers.CharField(read_only=True)
    operation_definition = serializers.SerializerMethodField()
    next_run_at = serializers.SerializerMethodField()
    last_run_at = serializers.SerializerMethodField()
    last_result = serializers.SerializerMethodField()

    class Meta:
        model = ScheduledOperation
        fields = [
            "id", "name", "description", "operation_type", "trigger_id", "operation_definition", "enabled",
            "next_run_at", "last_run_at", "last_result",
        ]

    def get_operation_definition(self, obj: ScheduledOperation) -> dict[str, str]:
        return {key: str(value) for key, value in (obj.operation_definition or {}).items()}

    def _status(self, obj: ScheduledOperation) -> OperationStatus:
        cache = self.context.setdefault("_operation_status", {})
        if obj.pk not in cache:
            cache[obj.pk] = operation_status(obj)
        return cache[obj.pk]

    def get_next_run_at(self, obj: ScheduledOperation) -> str | None:
        value = self._status(obj).next_run
        return format_time(value) if value else None

    def get_last_run_at(self, obj: ScheduledOperation) -> str | None:
        value = self._status(obj).last_run
        return format_time(value) if value else None

    def get_last_result(self, obj: ScheduledOperation) -> str | None:
        return self._status(obj).last_result


class LinkSerializer(serializers.Serializer):
    rel = serializers.CharField()
    href = serializers.CharField()
