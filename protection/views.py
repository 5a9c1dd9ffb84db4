"""Protection API: operation logs, os-services (worker registry), quotas and quota classes."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view, inline_serializer
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from karbor_site.api.exceptions import InvalidInput, NotAuthorized, NotFound
from karbor_site.api.renderers import empty_response
from karbor_site.api.viewsets import ProjectScopedViewSet, unwrap_body, validate_input
from karbor_site.tenancy.access import IsCloudAdmin, IsProjectMember
from protection import quotas, registry
from protection.filters import OperationLogFilterSet
from protection.models import OperationLog, Service
from protection.serializers import (
    OperationLogSerializer,
    QuotaClassSerializer,
    QuotaDetailSerializer,
    QuotaLimitsSerializer,
    QuotaSerializer,
    ServiceSerializer,
    ServiceUpdateSerializer,
)

LINKS = serializers.ListField(child=serializers.DictField())


def envelope(name: str, key: str, inner) -> serializers.Serializer:
    return inline_serializer(name=name, fields={key: inner})


@extend_schema_view(
    list=extend_schema(
        summary="List operation logs",
        responses=inline_serializer(
            name="OperationLogList",
            fields={"operation_logs": OperationLogSerializer(many=True), "operation_logs_links": LINKS},
        ),
    ),
    retrieve=extend_schema(
        summary="Show an operation log",
        responses=envelope("OperationLogEnvelope", "operation_log", OperationLogSerializer()),
    ),
)
class OperationLogViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet):
    """Read-only log of every protect, delete, copy, restore, verify and scheduled run."""

    queryset = OperationLog.objects.all()
    serializer_class = OperationLogSerializer
    filterset_class = OperationLogFilterSet
    envelope = "operation_log"
    collection = "operation_logs"
    sort_keys = {"id", "status", "created_at", "operation_type", "started_at", "ended_at"}


@extend_schema_view(
    list=extend_schema(
        summary="List services (cloud admin)",
        parameters=[OpenApiParameter("host", str), OpenApiParameter("binary", str)],
        responses=envelope("ServiceList", "services", ServiceSerializer(many=True)),
    ),
    update=extend_schema(
        summary="Enable or disable a service (cloud admin); the body is not wrapped",
        request=ServiceUpdateSerializer,
        responses=envelope("ServiceEnvelope", "service", ServiceSerializer()),
    ),
)
class ServiceViewSet(viewsets.GenericViewSet):
    """Karbor's ``os-services``: the registered workers and schedulers, their heartbeat state."""

    permission_classes = [IsProjectMember, IsCloudAdmin]
    queryset = Service.objects.none()  # for the schema only: list and update go through the registry
    serializer_class = ServiceSerializer
    lookup_url_kwarg = "id"
    lookup_value_regex = "[^/]+"

    def list(self, request: Request, project_id: str) -> Response:
        services = registry.service_list(
            host=request.query_params.get("host"), binary=request.query_params.get("binary")
        )
        return Response({"services": ServiceSerializer(services, many=True).data})

    def update(self, request: Request, project_id: str, id: str) -> Response:
        try:
            service_id = int(id)
        except ValueError:
            raise NotFound(f"Service {id} could not be found.") from None
        if not isinstance(request.data, dict):
            raise InvalidInput.for_field("body", "must be a JSON object")
        data = validate_input(ServiceUpdateSerializer, request.data)
        service = registry.service_update(
            service_id=service_id, status=data["status"], disabled_reason=data.get("disabled_reason")
        )
        return Response({"service": ServiceSerializer(service).data})


def _check_quota_target(request: Request, target_project_id: str) -> None:
    if not request.access.is_cloud_admin and target_project_id != request.access.project.id:
        raise NotAuthorized("Policy doesn't allow quota of another project to be read.")


@extend_schema_view(
    retrieve=extend_schema(summary="Show a project's quota", responses=envelope("QuotaEnvelope", "quota", QuotaSerializer())),
    update=extend_schema(
        summary="Update a project's quota (cloud admin)",
        request=envelope("QuotaUpdate", "quota", QuotaLimitsSerializer(partial=True)),
        responses=envelope("QuotaUpdated", "quota", QuotaLimitsSerializer()),
    ),
    destroy=extend_schema(summary="Reset a project's quota to the defaults (cloud admin)", responses={200: None}),
)
class QuotaViewSet(viewsets.GenericViewSet):
    """Plans and checkpoints per project; defaults from the ``default`` quota class."""

    permission_classes = [IsProjectMember]
    serializer_class = QuotaSerializer
    lookup_url_kwarg = "target_project_id"
    lookup_value_regex = "[^/]+"

    def get_permissions(self):
        if self.action in ("update", "destroy"):  # Karbor's admin_api rule
            return [IsProjectMember(), IsCloudAdmin()]
        return super().get_permissions()

    def retrieve(self, request: Request, project_id: str, target_project_id: str) -> Response:
        _check_quota_target(request, target_project_id)
        limits = quotas.quota_get(project_id=target_project_id)
        return Response({"quota": {**limits, "id": target_project_id}})

    @extend_schema(
        summary="Show a project's quota with usage",
        responses=envelope("QuotaDetailEnvelope", "quota", QuotaDetailSerializer()),
    )
    @action(detail=True, methods=["get"], url_path="detail")
    def usage(self, request: Request, project_id: str, target_project_id: str) -> Response:
        _check_quota_target(request, target_project_id)
        detail = quotas.quota_detail(project_id=target_project_id)
        return Response({"quota": {**detail, "id": target_project_id}})

    @extend_schema(summary="Show the default quota", responses=envelope("QuotaDefaultsEnvelope", "quota", QuotaSerializer()))
    @action(detail=True, methods=["get"])
    def defaults(self, request: Request, project_id: str, target_project_id: str) -> Response:
        _check_quota_target(request, target_project_id)
        return Response({"quota": {**quotas.quota_defaults(), "id": target_project_id}})

    def update(self, request: Request, project_id: str, target_project_id: str) -> Response:
        body = unwrap_body(request, "quota")
        limits = quotas.parse_limits(body, prefix="quota")
        return Response({"quota": quotas.quota_set(project_id=target_project_id, limits=limits)})

    def destroy(self, request: Request, project_id: str, target_project_id: str):
        quotas.quota_delete(project_id=target_project_id)
        return empty_response()


@extend_schema_view(
    retrieve=extend_schema(
        summary="Show a quota class", responses=envelope("QuotaClassEnvelope", "quota_class", QuotaClassSerializer())
    ),
    update=extend_schema(
        summary="Update a quota class (cloud admin)",
        request=envelope("QuotaClassUpdate", "quota_class", QuotaLimitsSerializer(partial=True)),
        responses=envelope("QuotaClassUpdated", "quota_class", QuotaLimitsSerializer()),
    ),
)
class QuotaClassViewSet(viewsets.GenericViewSet):
    permission_classes = [IsProjectMember]
    serializer_class = QuotaClassSerializer
    lookup_url_kwarg = "class_name"
    lookup_value_regex = "[^/]+"

    def get_permissions(self):
        if self.action == "update":
            return [IsProjectMember(), IsCloudAdmin()]
        return super().get_permissions()

    def retrieve(self, request: Request, project_id: str, class_name: str) -> Response:
        return Response({"quota_class": {**quotas.quota_class_get(class_name=class_name), "id": class_name}})

    def update(self, request: Request, project_id: str, class_name: str) -> Response:
        body = unwrap_body(request, "quota_class")
        limits = quotas.parse_limits(body, prefix="quota_class")
        return Response({"quota_class": quotas.quota_class_set(class_name=class_name, limits=limits)})
