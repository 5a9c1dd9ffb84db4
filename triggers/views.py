"""``/v1/{project_id}/triggers`` and ``/v1/{project_id}/scheduled_operations`` (Karbor v1 rows 21–29).

Another project's trigger or operation answers 404, like plans (Karbor said 403), so the
existence of other tenants' rows does not leak.
"""
from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from karbor_site.api.renderers import empty_response
from karbor_site.api.viewsets import ProjectScopedViewSet, unwrap_body, validate_input
from triggers import services
from triggers.filters import ScheduledOperationFilterSet, TriggerFilterSet
from triggers.models import ScheduledOperation, Trigger
from triggers.serializers import (
    LinkSerializer,
    ScheduledOperationCreateSerializer,
    ScheduledOperationSerializer,
    TriggerCreateSerializer,
    TriggerSerializer,
    TriggerUpdateSerializer,
)

PROJECT_PARAM = OpenApiParameter("project_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="Project id.")
TRIGGER_ID = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Trigger id.")
OPERATION_ID = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Scheduled operation id.")
LIST_PARAMETERS = [
    PROJECT_PARAM,
    OpenApiParameter("limit", OpenApiTypes.INT, description="Page size (capped by KARBOR_MAX_LIMIT)."),
    OpenApiParameter("marker", OpenApiTypes.STR, description="Id of the last item of the previous page."),
    OpenApiParameter("sort", OpenApiTypes.STR, description="`key[:asc|desc],…` over id, name, created_at."),
    OpenApiParameter("sort_key", OpenApiTypes.STR, description="Deprecated: one sort key."),
    OpenApiParameter("sort_dir", OpenApiTypes.STR, enum=["asc", "desc"], description="Deprecated: its direction."),
    OpenApiParameter("all_tenants", OpenApiTypes.BOOL, description="Cloud admins: list every project's rows."),
]
EMPTY_200 = OpenApiResponse(description="Deleted; empty body.")


def _envelope(name: str, key: str, serializer: serializers.Serializer) -> serializers.Serializer:
    return inline_serializer(name=name, fields={key: serializer})


def _collection(name: str, key: str, serializer: serializers.Serializer) -> serializers.Serializer:
    return inline_serializer(name=name, fields={key: serializer, f"{key}_links": LinkSerializer(many=True)})


TRIGGER_ENVELOPE = _envelope("TriggerInfoEnvelope", "trigger_info", TriggerSerializer())


@extend_schema_view(
    list=extend_schema(
        summary="List triggers",
        parameters=LIST_PARAMETERS,
        responses=_collection("TriggerList", "triggers", TriggerSerializer(many=True)),
    ),
    retrieve=extend_schema(summary="Show a trigger", parameters=[PROJECT_PARAM, TRIGGER_ID], responses=TRIGGER_ENVELOPE),
    create=extend_schema(
        summary="Create a time trigger",
        parameters=[PROJECT_PARAM],
        request=_envelope("TriggerCreateRequest", "trigger_info", TriggerCreateSerializer()),
        responses=TRIGGER_ENVELOPE,
    ),
    update=extend_schema(
        summary="Rename a trigger or replace its properties",
        parameters=[PROJECT_PARAM, TRIGGER_ID],
        request=_envelope("TriggerUpdateRequest", "trigger_info", TriggerUpdateSerializer()),
        responses=TRIGGER_ENVELOPE,
    ),
    destroy=extend_schema(
        summary="Delete a trigger no scheduled operation uses",
        parameters=[PROJECT_PARAM, TRIGGER_ID],
        responses={200: EMPTY_200},
    ),
)
class TriggerViewSet(ProjectScopedViewSet):
    """A project's time triggers: when scheduled operations run (crontab or calendar patterns)."""

    queryset = Trigger.objects.all()
    serializer_class = TriggerSerializer
    filterset_class = TriggerFilterSet
    envelope = "trigger_info"
    collection = "triggers"
    sort_keys = {"id", "name", "created_at", "type"}
    allow_offset = False
    not_found_message = "Trigger {id} could not be found."

    def create(self, request: Request, *args, **kwargs) -> Response:
        data = validate_input(TriggerCreateSerializer, unwrap_body(request, "trigger_info"))
        trigger = services.trigger_create(project_id=self.project_id, **data)
        return self.single(trigger)

    def update(self, request: Request, *args, **kwargs) -> Response:
        data = validate_input(TriggerUpdateSerializer, unwrap_body(request, "trigger_info"))
        trigger = services.trigger_update(trigger=self.get_object(), **data)
        return self.single(trigger)

    def destroy(self, request: Request, *args, **kwargs):
        services.trigger_delete(trigger=self.get_object())
        return empty_response()


OPERATION_ENVELOPE = _envelope("ScheduledOperationEnvelope", "scheduled_operation", ScheduledOperationSerializer())


@extend_schema_view(
    list=extend_schema(
        summary="List scheduled operations",
        parameters=LIST_PARAMETERS,
        responses=_collection("ScheduledOperationList", "operations", ScheduledOperationSerializer(many=True)),
    ),
    retrieve=extend_schema(
        summary="Show a scheduled operation", parameters=[PROJECT_PARAM, OPERATION_ID], responses=OPERATION_ENVELOPE
    ),
    create=extend_schema(
        summary="Schedule an operation on a trigger",
        parameters=[PROJECT_PARAM],
        request=_envelope(
            "ScheduledOperationCreateRequest", "scheduled_operation", ScheduledOperationCreateSerializer()
        ),
        responses=OPERATION_ENVELOPE,
    ),
    destroy=extend_schema(
        summary="Delete a scheduled operation", parameters=[PROJECT_PARAM, OPERATION_ID], responses={200: EMPTY_200}
    ),
)
class ScheduledOperationViewSet(ProjectScopedViewSet):
    """A project's scheduled operations: protect (or protect and apply retention to) a plan when a trigger fires."""

    queryset = ScheduledOperation.objects.select_related("trigger")
    serializer_class = ScheduledOperationSerializer
    filterset_class = ScheduledOperationFilterSet
    envelope = "scheduled_operation"
    collection = "operations"
    sort_keys = {"id", "name", "created_at", "operation_type"}
    allow_offset = False

    def collection_path(self) -> str:
        # The envelope says "operations", but the next link must point back at this path.
        return f"/v1/{self.project_id}/scheduled_operations"

    def create(self, request: Request, *args, **kwargs) -> Response:
        data = validate_input(ScheduledOperationCreateSerializer, unwrap_body(request, "scheduled_operation"))
        operation = services.scheduled_operation_create(
            project_id=self.project_id, user_id=str(request.user.pk), **data
        )
        return self.single(operation)

    def destroy(self, request: Request, *args, **kwargs):
        services.scheduled_operation_delete(operation=self.get_object())
        return empty_response()
