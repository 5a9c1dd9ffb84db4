"""Output and input serializers of the protection API (Karbor's wire shapes)."""
from __future__ import annotations

import json

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from karbor_site.api.viewsets import StrictInputSerializer
from plans.serializers import UUIDStringField
from protection.models import Checkpoint, OperationLog, Service
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


class ServiceUpdateSerializer(StrictInputSerializer):
    status = serializers.ChoiceField(choices=["enabled", "disabled"])
    disabled_reason = serializers.CharField(max_length=255, required=False, allow_null=True, allow_blank=True)


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


# --- checkpoints ---------------------------------------------------------------------------

PROGRESS_SCHEMA = {
    "type": "object",
    "properties": {
        "bytes_done": {"type": "integer"},
        "bytes_total": {"type": "integer", "nullable": True},
        "items_done": {"type": "integer"},
        "items_total": {"type": "integer", "nullable": True},
    },
}


class CheckpointPlanSerializer(serializers.Serializer):
    """The plan as it was when the checkpoint was requested."""

    id = serializers.CharField()
    name = serializers.CharField(allow_blank=True)
    provider_id = serializers.CharField()
    resources = serializers.ListField(child=serializers.DictField())


class CheckpointSerializer(serializers.ModelSerializer):
    """Karbor's checkpoint view. ``resource_graph`` is a JSON string as Karbor sends it (the client's
    ``checkpoint-show`` parses it); ``extra_info`` is a JSON string too, as Karbor sent it, but of
    the value the caller gave (Karbor always stored ``{"created_by": "manual"}``).

    Added to Karbor's keys: ``provider_id``, ``resources_status`` / ``resources_reason`` (keyed
    ``"<type>#<id>"``), ``status_reason`` and ``progress``.
    """

    protection_plan = serializers.SerializerMethodField()
    resource_graph = serializers.SerializerMethodField()
    created_at = serializers.SerializerMethodField()
    extra_info = serializers.SerializerMethodField()
    resources_status = serializers.DictField(child=serializers.CharField())
    resources_reason = serializers.DictField(child=serializers.CharField())
    status_reason = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Checkpoint
        fields = [
            "id", "project_id", "provider_id", "status", "protection_plan", "resource_graph", "created_at",
            "extra_info", "resources_status", "resources_reason", "status_reason", "progress",
        ]

    @extend_schema_field(CheckpointPlanSerializer)
    def get_protection_plan(self, obj: Checkpoint) -> dict:
        plan = obj.protection_plan or {}
        return {key: plan.get(key) for key in ("id", "name", "provider_id", "resources")}

    @extend_schema_field({"type": "string", "nullable": True, "description": "JSON: [nodes, adjacency] (Karbor's packed graph)."})
    def get_resource_graph(self, obj: Checkpoint) -> str | None:
        return None if obj.resource_graph is None else json.dumps(obj.resource_graph)

    @extend_schema_field({"type": "string", "format": "date", "nullable": True})
    def get_created_at(self, obj: Checkpoint) -> str | None:
        return obj.created_at.strftime("%Y-%m-%d") if obj.created_at else None

    @extend_schema_field({"type": "string", "description": "JSON of an object, e.g. {\"created_by\": \"manual\"}."})
    def get_extra_info(self, obj: Checkpoint) -> str:
        return json.dumps(obj.extra_info or {})

    @extend_schema_field({"type": "string", "nullable": True})
    def get_status_reason(self, obj: Checkpoint) -> str | None:
        return obj.status_reason or None

    @extend_schema_field(PROGRESS_SCHEMA)
    def get_progress(self, obj: Checkpoint) -> dict:
        return {
            "bytes_done": obj.bytes_done,
            "bytes_total": obj.bytes_total,
            "items_done": obj.items_done,
            "items_total": obj.items_total,
        }


@extend_schema_field(
    {
        "type": "object",
        "nullable": True,
        "additionalProperties": {"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "boolean"}]},
    }
)
class MetadataField(serializers.JSONField):
    pass


class CheckpointCreateSerializer(StrictInputSerializer):
    """``{"plan_id": uuid, "extra-info": metadata}``; ``extra_info`` (underscore) is accepted too."""

    plan_id = UUIDStringField()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["extra-info"] = MetadataField(required=False, allow_null=True)
        self.fields["extra_info"] = MetadataField(required=False, allow_null=True)


class ResetStateSerializer(StrictInputSerializer):
    state = serializers.ChoiceField(choices=["available", "error"])


LINKS_FIELD = serializers.ListField(child=serializers.DictField(child=serializers.CharField()))


class CopyParametersSerializer(serializers.Serializer):
    """Documentation of the copy parameters (validated by ``protection.copies``)."""

    destination_provider_id = serializers.UUIDField(help_text="The provider whose bank receives the copies.")
    checkpoint_id = serializers.UUIDField(required=False, help_text="Copy only this checkpoint of the plan.")


class CheckpointCopySerializer(serializers.Serializer):
    plan_id = serializers.UUIDField()
    parameters = CopyParametersSerializer()


class CopyPairSerializer(serializers.Serializer):
    checkpoint_protect_id = serializers.CharField(help_text="The checkpoint copied.")
    checkpoint_copy_id = serializers.CharField(help_text="The new checkpoint, in the destination provider.")


class CheckpointCopyResultSerializer(serializers.Serializer):
    project_id = serializers.CharField()
    provider_id = serializers.CharField()
    plan_id = serializers.CharField()
    checkpoint_id = CopyPairSerializer(many=True)
    parameters = serializers.DictField()
