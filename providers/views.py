"""Providers (§2.1) and protectables (§2.5) of the Karbor v1 API; both are read-only."""
from __future__ import annotations

import ast
import json
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework.request import Request
from rest_framework.response import Response

from karbor_site.errors import InvalidInput
from karbor_site.api.listing import ListParams, next_links, parse_list_params
from karbor_site.api.viewsets import ProjectScopedViewSet
from karbor_site.db import is_uuid_like
from providers import selectors
from providers.models import Provider
from providers.serializers import (
    InstanceCollection,
    InstanceEnvelope,
    InstanceSerializer,
    ProtectableTypeEnvelope,
    ProtectableTypeList,
    ProviderCollection,
    ProviderEnvelope,
    ProviderSerializer,
)

# The sort keys python-karborclient allows; providers and instances accept but ignore sorting.
CLIENT_SORT_KEYS = {"id", "status", "name", "created_at"}

PROJECT_PARAM = OpenApiParameter("project_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="Project id.")
PAGE_PARAMS = [
    OpenApiParameter("limit", OpenApiTypes.INT, description="Page size (positive, capped by KARBOR_MAX_LIMIT)."),
    OpenApiParameter("marker", OpenApiTypes.STR, description="Id of the last item already seen."),
]


def page(items: list, params: ListParams, id_of) -> list:
    """Cut the page after ``marker`` (an unknown marker is ignored, as Karbor does for providers)."""
    if params.marker:
        ids = [id_of(item) for item in items]
        if params.marker in ids:
            items = items[ids.index(params.marker) + 1 :]
    return items[: params.limit]


def parse_parameters(raw: str | None) -> dict[str, Any]:
    """The ``parameters`` query value: a Python or JSON dict literal (what the client sends)."""
    if raw is None or raw == "":
        return {}
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        try:
            value = json.loads(raw)
        except ValueError:
            raise InvalidInput.for_field("parameters", "must be a dict literal such as {'name': 'value'}") from None
    if not isinstance(value, dict):
        raise InvalidInput.for_field("parameters", "must be a dict literal such as {'name': 'value'}")
    return value


@extend_schema_view(
    list=extend_schema(
        summary="List providers",
        parameters=[
            PROJECT_PARAM,
            *PAGE_PARAMS,
            OpenApiParameter("name", OpenApiTypes.STR, description="Exact name."),
            OpenApiParameter("description", OpenApiTypes.STR, description="Exact description."),
        ],
        responses=ProviderCollection,
    ),
    retrieve=extend_schema(
        summary="Show a provider",
        parameters=[PROJECT_PARAM, OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        responses=ProviderEnvelope,
    ),
)
class ProviderViewSet(ProjectScopedViewSet):
    """Providers come from the operator's provider files, ordered by id; every project sees them all."""

    envelope = "provider"
    collection = "providers"
    # Served from the registry; the mirror model only types the schema.
    queryset = Provider.objects.none()
    serializer_class = ProviderSerializer
    filter_keys = ("name", "description", "id")

    def list(self, request: Request, *args, **kwargs) -> Response:
        params = parse_list_params(request, sort_keys=CLIENT_SORT_KEYS, allow_offset=False)
        filters = {key: request.query_params[key] for key in self.filter_keys if key in request.query_params}
        providers = page(selectors.provider_list(filters=filters), params, lambda p: p.id)
        return Response(
            {
                "providers": ProviderSerializer(providers, many=True).data,
                "providers_links": next_links(request, self.collection_path(), providers, params, id_of=lambda p: p.id),
            }
        )

    def retrieve(self, request: Request, *args, **kwargs) -> Response:
        provider_id = self.kwargs["id"]
        if not is_uuid_like(provider_id):
            raise InvalidInput.for_field("provider_id", f"{provider_id!r} is not a valid UUID")
        return Response({"provider": ProviderSerializer(selectors.provider_get(provider_id=provider_id)).data})


TYPE_PARAM = OpenApiParameter(
    "protectable_type", OpenApiTypes.STR, OpenApiParameter.PATH, description="A resource type, e.g. Filesystem::Directory."
)
PARAMETERS_PARAM = OpenApiParameter(
    "parameters", OpenApiTypes.STR, description="A dict literal passed to the plugin, e.g. {'name': 'x'}."
)


class ProtectableViewSet(ProjectScopedViewSet):
    """Resource types the configured providers serve, and the instances a project may protect."""

    envelope = "protectable_type"
    collection = "protectables"
    queryset = Provider.objects.none()
    serializer_class = InstanceSerializer

    @extend_schema(summary="List protectable types", parameters=[PROJECT_PARAM], responses=ProtectableTypeList)
    def list(self, request: Request, *args, **kwargs) -> Response:
        return Response({"protectable_type": selectors.protectable_type_list()})

    @extend_schema(summary="Show a protectable type", parameters=[PROJECT_PARAM, TYPE_PARAM], responses=ProtectableTypeEnvelope)
    def retrieve(self, request: Request, *args, **kwargs) -> Response:
        return Response({"protectable_type": selectors.protectable_type_get(resource_type=kwargs["protectable_type"])})

    @extend_schema(
        summary="List protectable instances",
        operation_id="protectable_instances_list",
        parameters=[
            PROJECT_PARAM,
            TYPE_PARAM,
            PARAMETERS_PARAM,
            *PAGE_PARAMS,
            OpenApiParameter("type", OpenApiTypes.STR, description="Sent by python-karborclient; ignored."),
        ],
        responses=InstanceCollection,
    )
    def instances(self, request: Request, *args, **kwargs) -> Response:
        resource_type = kwargs["protectable_type"]
        params = parse_list_params(request, sort_keys=CLIENT_SORT_KEYS, allow_offset=False)
        parameters = parse_parameters(request.query_params.get("parameters"))
        found = selectors.instance_list(project_id=self.project_id, resource_type=resource_type, parameters=parameters)
        items = page(found, params, lambda i: i.id)
        # The link points at this very listing (Karbor's pointed at a non-existent /instances path).
        path = f"/v1/{self.project_id}/protectables/{resource_type}/instances"
        return Response(
            {
                "instances": InstanceSerializer(items, many=True).data,
                "instances_links": next_links(request, path, items, params, id_of=lambda i: i.id),
            }
        )

    @extend_schema(
        summary="Show a protectable instance",
        operation_id="protectable_instance_show",
        parameters=[
            PROJECT_PARAM,
            TYPE_PARAM,
            OpenApiParameter("instance_id", OpenApiTypes.STR, OpenApiParameter.PATH),
            PARAMETERS_PARAM,
        ],
        responses=InstanceEnvelope,
    )
    def instance(self, request: Request, *args, **kwargs) -> Response:
        instance = selectors.instance_get(
            project_id=self.project_id,
            resource_type=kwargs["protectable_type"],
            instance_id=kwargs["instance_id"],
            parameters=parse_parameters(request.query_params.get("parameters")),
        )
        return Response({"instance": InstanceSerializer(instance).data})
