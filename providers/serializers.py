"""Output shapes of the providers and protectables API (Karbor §2.1, §2.5)."""
from __future__ import annotations

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers


class ExtendedInfoSchemaSerializer(serializers.Serializer):
    options_schema = serializers.DictField(child=serializers.DictField(), help_text="Plan `parameters`, per type.")
    restore_schema = serializers.DictField(child=serializers.DictField(), help_text="Restore `parameters`, per type.")
    saved_info_schema = serializers.DictField(
        child=serializers.DictField(), help_text="What a checkpoint records per resource, per type."
    )


class ProviderSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField(allow_null=True)
    # DRF calls the config's extended_info_schema() method.
    extended_info_schema = ExtendedInfoSchemaSerializer()


class DependentResourceSerializer(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.CharField()
    name = serializers.CharField()
    extra_info = serializers.DictField(allow_null=True)


class InstanceSerializer(DependentResourceSerializer):
    dependent_resources = DependentResourceSerializer(many=True)


class ProtectableTypeSerializer(serializers.Serializer):
    name = serializers.CharField()
    dependent_types = serializers.ListField(child=serializers.CharField())


LINKS = serializers.ListField(child=serializers.DictField(child=serializers.CharField()))

ProviderEnvelope = inline_serializer(name="ProviderEnvelope", fields={"provider": ProviderSerializer()})
ProviderCollection = inline_serializer(
    name="ProviderCollection", fields={"providers": ProviderSerializer(many=True), "providers_links": LINKS}
)
ProtectableTypeList = inline_serializer(
    name="ProtectableTypeList", fields={"protectable_type": serializers.ListField(child=serializers.CharField())}
)
ProtectableTypeEnvelope = inline_serializer(
    name="ProtectableTypeEnvelope", fields={"protectable_type": ProtectableTypeSerializer()}
)
InstanceEnvelope = inline_serializer(name="InstanceEnvelope", fields={"instance": InstanceSerializer()})
InstanceCollection = inline_serializer(
    name="InstanceCollection", fields={"instances": InstanceSerializer(many=True), "instances_links": LINKS}
)
