"""Verifications (§2.10 of the Karbor v1 API): list, create, show."""
from __future__ import annotations

import django_filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework.request import Request
from rest_framework.response import Response

from karbor_site.api.viewsets import ProjectScopedViewSet, unwrap_body, validate_input
from protection.verifications import services
from protection.models import Verification
from protection.verifications.serializers import (
    VerificationCollection,
    VerificationCreateEnvelope,
    VerificationCreateSerializer,
    VerificationEnvelope,
    VerificationSerializer,
)
from restores.filters import AdminOnlyFilter

PROJECT_PARAM = OpenApiParameter("project_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="Project id.")
ID_PARAM = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Verification id.")
LIST_PARAMS = [
    OpenApiParameter("limit", OpenApiTypes.INT, description="Page size (positive, capped by KARBOR_MAX_LIMIT)."),
    OpenApiParameter("marker", OpenApiTypes.STR, description="Id of the last verification already seen."),
    OpenApiParameter("offset", OpenApiTypes.INT, description="Rows to skip."),
    OpenApiParameter("sort", OpenApiTypes.STR, description="key[:asc|desc],… over id, status, created_at."),
    OpenApiParameter("sort_key", OpenApiTypes.STR, description="Deprecated single sort key."),
    OpenApiParameter("sort_dir", OpenApiTypes.STR, description="Deprecated sort direction (asc, desc)."),
    OpenApiParameter("all_tenants", OpenApiTypes.BOOL, description="Cloud admins: list every project's verifications."),
]


class VerificationFilterSet(django_filters.FilterSet):
    status = django_filters.CharFilter(field_name="status", help_text="Exact status: in_progress, success or fail.")
    project_id = AdminOnlyFilter(field_name="project_id", help_text="Cloud admins with all_tenants: one project.")
    checkpoint_id = AdminOnlyFilter(field_name="checkpoint_id", help_text="Cloud admins: one checkpoint's verifications.")

    class Meta:
        model = Verification
        fields = ["status", "project_id", "checkpoint_id"]


@extend_schema_view(
    list=extend_schema(
        summary="List verifications", parameters=[PROJECT_PARAM, *LIST_PARAMS], responses=VerificationCollection
    ),
    retrieve=extend_schema(
        summary="Show a verification", parameters=[PROJECT_PARAM, ID_PARAM], responses=VerificationEnvelope
    ),
    create=extend_schema(
        summary="Verify a checkpoint (re-read and authenticate every chunk)",
        description="Validated at once: unknown provider or checkpoint → 404, checkpoint not available → 409, "
        "non-empty parameters → 400; nothing is created then. Otherwise the verification starts "
        "`in_progress` and a worker runs it.",
        parameters=[PROJECT_PARAM],
        request=VerificationCreateEnvelope,
        responses={200: VerificationEnvelope},
    ),
)
class VerificationViewSet(ProjectScopedViewSet):
    """A project's checkpoint verifications."""

    queryset = Verification.objects.all()
    serializer_class = VerificationSerializer
    filterset_class = VerificationFilterSet
    envelope = "verification"
    collection = "verifications"
    sort_keys = {"id", "status", "created_at", "checkpoint_id"}

    def create(self, request: Request, *args, **kwargs) -> Response:
        data = validate_input(VerificationCreateSerializer, unwrap_body(request, "verification"))
        verification = services.verification_create(
            project_id=self.project_id, is_cloud_admin=self.access.is_cloud_admin, **data
        )
        return self.single(verification)
