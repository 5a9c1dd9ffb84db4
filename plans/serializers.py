"""Input and output shapes of the plans API (Karbor §2.4)."""
from __future__ import annotations

import uuid

from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from karbor_site.api.viewsets import StrictInputSerializer
from karbor_site.db import is_uuid_like
from plans.models import Plan, PlanStatus, Resource


class StrictCharField(serializers.CharField):
    """A string and nothing else: Karbor's JSON schema refuses numbers where strings are expected."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class UUIDStringField(StrictCharField):
    """A UUID in any spelling ``is_uuid_like`` accepts, normalised to the dashed lower-case form."""

    default_error_messages = {"invalid_uuid": "must be a valid UUID"}

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not is_uuid_like(value):
            self.fail("invalid_uuid")
        return str(uuid.UUID(value))


class ResourceInputSerializer(StrictInputSerializer):
    id = StrictCharField(max_length=36)
    type = StrictCharField(max_length=64)
    name = StrictCharField(max_length=255)
    extra_info = serializers.DictField(required=False, allow_null=True)


class PlanCreateSerializer(StrictInputSerializer):
    name = StrictCharField(max_length=255, required=False, allow_null=True)
    description = StrictCharField(max_length=255, required=False, allow_null=True, allow_blank=True, trim_whitespace=False)
    provider_id = UUIDStringField()
    resources = ResourceInputSerializer(many=True, allow_empty=False)
    parameters = serializers.DictField()


class PlanUpdateSerializer(StrictInputSerializer):
    name = StrictCharField(max_length=255, required=False, allow_null=True)
    description = StrictCharField(max_length=255, required=False, allow_null=True, allow_blank=True, trim_whitespace=False)
    resources = ResourceInputSerializer(many=True, allow_empty=False, required=False)
    status = serializers.ChoiceField(choices=PlanStatus.choices, required=False)

    def to_internal_value(self, data):
        if isinstance(data, dict):
            frozen = [key for key in ("parameters", "provider_id") if key in data]
            if frozen:
                raise serializers.ValidationError(
                    {key: ["cannot be changed after the plan is created"] for key in frozen}
                )
        return super().to_internal_value(data)


class ResourceSerializer(serializers.ModelSerializer):
    """A plan resource; ``extra_info`` appears only when one was stored (Karbor's view)."""

    id = serializers.CharField(source="resource_id")
    type = serializers.CharField(source="resource_type")
    name = serializers.CharField(source="resource_name")
    extra_info = serializers.DictField(source="resource_extra_info", required=False)

    class Meta:
        model = Resource
        fields = ["id", "type", "name", "extra_info"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if instance.resource_extra_info is None:
            data.pop("extra_info", None)
        return data


@extend_schema_field({"type": "object", "additionalProperties": {"type": "object"}})
class ParametersField(serializers.JSONField):
    pass


class PlanSerializer(serializers.ModelSerializer):
    resources = ResourceSerializer(many=True, read_only=True)
    parameters = ParametersField()

    class Meta:
        model = Plan
        fields = ["id", "name", "description", "resources", "provider_id", "status", "parameters"]


LINKS = serializers.ListField(child=serializers.DictField(child=serializers.CharField()))
PlanEnvelope = inline_serializer(name="PlanEnvelope", fields={"plan": PlanSerializer()})
PlanCollection = inline_serializer(
    name="PlanCollection", fields={"plans": PlanSerializer(many=True), "plans_links": LINKS}
)
PlanCreateEnvelope = inline_serializer(name="PlanCreateEnvelope", fields={"plan": PlanCreateSerializer()})
PlanUpdateEnvelope = inline_serializer(name="PlanUpdateEnvelope", fields={"plan": PlanUpdateSerializer()})
