"""Plans (§2.4 of the Karbor v1 API)."""
from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework.request import Request
from rest_framework.response import Response

from karbor_site.api.renderers import empty_response
from karbor_site.api.viewsets import ProjectScopedViewSet, unwrap_body, validate_input
from plans import services
from plans.filters import PlanFilterSet
from plans.models import Plan
from plans.serializers import (
    PlanCollection,
    PlanCreateEnvelope,
    PlanCreateSerializer,
    PlanEnvelope,
    PlanSerializer,
    PlanUpdateEnvelope,
    PlanUpdateSerializer,
)

PROJECT_PARAM = OpenApiParameter("project_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="Project id.")
ID_PARAM = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Plan id.")
LIST_PARAMS = [
    OpenApiParameter("limit", OpenApiTypes.INT, description="Page size (positive, capped by KARBOR_MAX_LIMIT)."),
    OpenApiParameter("marker", OpenApiTypes.STR, description="Id of the last plan already seen."),
    OpenApiParameter("offset", OpenApiTypes.INT, description="Rows to skip."),
    OpenApiParameter("sort", OpenApiTypes.STR, description="key[:asc|desc],… over id, status, name, created_at."),
    OpenApiParameter("sort_key", OpenApiTypes.STR, description="Deprecated single sort key."),
    OpenApiParameter("sort_dir", OpenApiTypes.STR, description="Deprecated sort direction (asc, desc)."),
    OpenApiParameter("all_tenants", OpenApiTypes.BOOL, description="Cloud admins: list every project's plans."),
]


@extend_schema_view(
    list=extend_schema(summary="List plans", parameters=[PROJECT_PARAM, *LIST_PARAMS], responses=PlanCollection),
    retrieve=extend_schema(summary="Show a plan", parameters=[PROJECT_PARAM, ID_PARAM], responses=PlanEnvelope),
    create=extend_schema(
        summary="Create a plan", parameters=[PROJECT_PARAM], request=PlanCreateEnvelope, responses={200: PlanEnvelope}
    ),
    update=extend_schema(
        summary="Update a plan (name, description, resources, status)",
        parameters=[PROJECT_PARAM, ID_PARAM],
        request=PlanUpdateEnvelope,
        responses=PlanEnvelope,
    ),
    destroy=extend_schema(
        summary="Delete a plan", parameters=[PROJECT_PARAM, ID_PARAM], responses={200: None}
    ),
)
class PlanViewSet(ProjectScopedViewSet):
    """A project's protection plans."""

    queryset = Plan.objects.prefetch_related("resources")
    serializer_class = PlanSerializer
    filterset_class = PlanFilterSet
    envelope = "plan"
    collection = "plans"

    def create(self, request: Request, *args, **kwargs) -> Response:
        data = validate_input(PlanCreateSerializer, unwrap_body(request, "plan"))
        plan = services.plan_create(project_id=self.project_id, **data)
        return self.single(Plan.objects.prefetch_related("resources").get(pk=plan.pk))

    def update(self, request: Request, *args, **kwargs) -> Response:
        plan = self.get_object()
        body = unwrap_body(request, "plan")
        if not body:
            services.plan_update(project_id=self.project_id, plan_id=plan.pk)  # raises "Missing updated parameters"
        data = validate_input(PlanUpdateSerializer, body)
        return self.single(services.plan_update(project_id=self.project_id, plan_id=plan.pk, **data))

    def destroy(self, request: Request, *args, **kwargs):
        plan = self.get_object()
        services.plan_delete(project_id=self.project_id, plan_id=plan.pk)
        return empty_response()
