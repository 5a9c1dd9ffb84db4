"""Input and output shapes of the verifications API (Karbor §2.10)."""
from __future__ import annotations

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

from karbor_site.api.viewsets import StrictInputSerializer
from plans.serializers import ParametersField, UUIDStringField
from protection.models import Verification
from restores.serializers import ResourceMapField


class VerificationCreateSerializer(StrictInputSerializer):
    provider_id = UUIDStringField()
    checkpoint_id = UUIDStringField()
    parameters = ParametersField(required=False, default=dict, help_text="Must be empty: there is no verify schema.")

    def validate_parameters(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be an object")
        return value


class VerificationSerializer(serializers.ModelSerializer):
    parameters = ParametersField()
    resources_status = ResourceMapField()
    resources_reason = ResourceMapField()

    class Meta:
        model = Verification
        fields = [
            "id", "project_id", "provider_id", "checkpoint_id", "parameters", "status", "resources_status",
            "resources_reason",
        ]


LINKS = serializers.ListField(child=serializers.DictField(child=serializers.CharField()))
VerificationEnvelope = inline_serializer(name="VerificationEnvelope", fields={"verification": VerificationSerializer()})
VerificationCollection = inline_serializer(
    name="VerificationCollection",
    fields={"verifications": VerificationSerializer(many=True), "verifications_links": LINKS},
)
VerificationCreateEnvelope = inline_serializer(
    name="VerificationCreateEnvelope", fields={"verification": VerificationCreateSerializer()}
)
