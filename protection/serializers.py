"""Output and input serializers of the protection API (Karbor's wire shapes)."""
from __future__ import annotations

from rest_framework import serializers

from protection.models import OperationLog, Service
from protection.registry import service_is_up


class OperationLogSerializer(serializers.ModelSerializer):
    """Karbor's operation_log view, plus progress (bytes and items done/total) while running."""

    started_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)
    extra_info = serializers.JSONField(allow_null=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = OperationLog
        fields = [
            "id", "project_id", "operation_type", "checkpoint_id", "plan_id", "provider_id", "restore_id",
            "scheduled_operation_id", "status", "started_at", "ended_at", "error_info", "extra_info", "progress",
        ]

    def get_progress(self, obj: OperationLog) -> dict:
        return {
            "bytes_done": obj.bytes_done,
            "bytes_total": obj.bytes_total,
            "items_done": obj.items_done,
            "items_total": obj.items_total,
        }


class ServiceSerializer(serializers.ModelSerializer):
    """Karbor's os-services view: ``status`` from the disabled flag, ``state`` from the heartbeat."""

    status = serializers.SerializerMethodField()
    state = serializers.SerializerMethodField()
    updated_at = serializers.DateTimeField(source="modified_at")
    disabled_reason = serializers.SerializerMethodField()

    class Meta:
        model = Service
        fields = ["id", "binary", "host", "status", "state", "updated_at", "disabled_reason"]

    def get_status(self, obj: Service) -> str:
        return "disabled" if obj.disabled else "enabled"

    def get_state(self, obj: Service) -> str:
        return "up" if service_is_up(obj) else "down"

    def get_disabled_reason(self, obj: Service) -> str | None:
        return obj.disabled_reason or None


class ServiceUpdateSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["enabled", "disabled"])
    disabled_reason = serializers.CharField(max_length=255, required=False, allow_null=True, allow_blank=True)

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["unknown field"] for name in unknown})
        return super().to_internal_value(data)


class QuotaLimitsSerializer(serializers.Serializer):
    plans = serializers.IntegerField(min_value=-1)
    checkpoints = serializers.IntegerField(min_value=-1)


class QuotaSerializer(QuotaLimitsSerializer):
    id = serializers.CharField()


class QuotaUsageSerializer(serializers.Serializer):
    limit = serializers.IntegerField()
    in_use = serializers.IntegerField()
    reserved = serializers.IntegerField()


class QuotaDetailSerializer(serializers.Serializer):
    id = serializers.CharField()
    plans = QuotaUsageSerializer()
    checkpoints = QuotaUsageSerializer()


class QuotaClassSerializer(QuotaLimitsSerializer):
    id = serializers.CharField()
