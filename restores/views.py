"""Restores (§2.6 of the Karbor v1 API): list, create, show."""
from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework.request import Request
from rest_framework.response import Response

from karbor_site.api.viewsets import ProjectScopedViewSet, unwrap_body, validate_input
from restores import services
from restores.filters import RestoreFilterSet
from restores.models import Restore
from restores.serializers import RestoreCollection, RestoreCreateEnvelope, RestoreCreateSerializer, RestoreEnvelope, RestoreSerializer

PROJECT_PARAM = OpenApiParameter("project_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="Project id.")
ID_PARAM = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Restore id.")
LIST_PARAMS = [
    OpenApiParameter("limit", OpenApiTypes.INT, description="Page size (positive, capped by KARBOR_MAX_LIMIT)."),
    OpenApiParameter("marker", OpenApiTypes.STR, description="Id of the last restore already seen."),
    OpenApiParameter("offset", OpenApiTypes.INT, description="Rows to skip."),
    OpenApiParameter("sort", OpenApiTypes.STR, description="key[:asc|desc],… over id, status, created_at."),
    OpenApiParameter("sort_key", OpenApiTypes.STR, description="Deprecated single sort key."),
    OpenApiParameter("sort_dir", OpenApiTypes.STR, description="Deprecated sort direction (asc, desc)."),
    OpenApiParameter("all_tenants", OpenApiTypes.BOOL, description="Cloud admins: list every project's restores."),
]


@extend_schema_view(
    list=extend_schema(summary="List restores", parameters=[PROJECT_PARAM, *LIST_PARAMS], responses=RestoreCollection),
    retrieve=extend_schema(summary="Show a restore", parameters=[PROJECT_PARAM, ID_PARAM], responses=RestoreEnvelope),
    create=extend_schema(
        summary="Restore a checkpoint (in place, or into a declared restore target)",
        description="Validated at once: unknown provider or checkpoint → 404, checkpoint not available → 409, "
        "bad restore_target or parameters → 400 naming the field; nothing is created then. Otherwise the "
        "restore starts `in_progress` and a worker runs it.",
        parameters=[PROJECT_PARAM],
        request=RestoreCreateEnvelope,
        responses={200: RestoreEnvelope},
    ),
)
class RestoreViewSet(ProjectScopedViewSet):
    """A project's restores."""

    queryset = Restore.objects.all()
    serializer_class = RestoreSerializer
    filterset_class = RestoreFilterSet
    envelope = "restore"
    collection = "restores"
    sort_keys = {"id", "status", "created_at", "checkpoint_id", "provider_id"}

    def create(self, request: Request, *args, **kwargs) -> Response:
        data = validate_input(RestoreCreateSerializer, unwrap_body(request, "restore"))
        data.pop("restore_auth", None)
        restore = services.restore_create(
            project_id=self.project_id, is_cloud_admin=self.access.is_cloud_admin, **data
        )
        return self.single(restore)
