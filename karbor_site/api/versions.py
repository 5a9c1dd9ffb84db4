"""``GET /``: the API versions document, answered with 300 as Karbor does."""
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view, permission_classes, renderer_classes
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from karbor_site.api.renderers import KarborJSONRenderer


@extend_schema(
    summary="List API versions",
    responses={
        300: inline_serializer(
            name="VersionsDocument", fields={"versions": serializers.ListField(child=serializers.DictField())}
        )
    },
)
@api_view(["GET"])
@permission_classes([AllowAny])
@renderer_classes([KarborJSONRenderer])
def versions(request):
    href = request.build_absolute_uri("/v1/")
    return Response(
        {"versions": [{"id": "v1.0", "status": "CURRENT", "links": [{"rel": "self", "href": href}]}]},
        status=300,
    )
