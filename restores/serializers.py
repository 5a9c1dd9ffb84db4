"""Input and output shapes of the restores API (Karbor §2.6)."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from karbor_site.api.viewsets import StrictInputSerializer
from plans.serializers import ParametersField, StrictCharField, UUIDStringField
from restores.models import Restore


@extend_schema_field({"type": "object", "nullable": True, "additionalProperties": True})
class MetadataField(serializers.JSONField):
    """Karbor's ``metadata`` type: an object or null."""

    default_error_messages = {"not_object": "must be an object or null"}

    def to_internal_value(self, data):
        if data is not None and not isinstance(data, dict):
            self.fail("not_object")
        return data


class RestoreCreateSerializer(StrictInputSerializer):
    """What python-karborclient sends: ``restore_target`` and ``restore_auth`` are always present, maybe null."""

    provider_id = UUIDStringField()
    checkpoint_id = UUIDStringField()
    restore_target = StrictCharField(max_length=255, required=False, allow_null=True, allow_blank=True)
    # Credentials for a remote target: accepted for compatibility, never stored nor echoed.
    restore_auth = MetadataField(required=False, allow_null=True)
    parameters = ParametersField(required=False, default=dict)

    def validate_parameters(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be an object")
        return value


@extend_schema_field({"type": "object", "additionalProperties": {"type": "string"}})
class ResourceMapField(serializers.JSONField):
    """``{"<type>#<id>": "<status or reason>"}``."""


class RestoreSerializer(serializers.ModelSerializer):
    """Karbor's restore view (create, show and list items); ``restore_auth`` is never returned."""

    restore_target = serializers.SerializerMethodField()
    parameters = ParametersField()
    resources_status = ResourceMapField()
    resources_reason = ResourceMapField()

    class Meta:
        model = Restore
        fields = [
            "id", "project_id", "provider_id", "checkpoint_id", "restore_target", "parameters", "status",
            "resources_status", "resources_reason",
        ]

    def get_restore_target(self, obj: Restore) -> str | None:
        return obj.restore_target or None


LINKS = serializers.ListField(child=serializers.DictField(child=serializers.CharField()))
RestoreEnvelope = inline_serializer(name="RestoreEnvelope", fields={"restore": RestoreSerializer()})
RestoreCollection = inline_serializer(
    name="RestoreCollection", fields={"restores": RestoreSerializer(many=True), "restores_links": LINKS}
)
RestoreCreateEnvelope = inline_serializer(name="RestoreCreateEnvelope", fields={"restore": RestoreCreateSerializer()})
