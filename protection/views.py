"""Protection API: checkpoints, operation logs, os-services (worker registry), quotas and quota classes."""
from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from karbor_site.errors import InvalidInput, NotAuthorized, NotFound
from karbor_site.api.listing import ListParams, parse_list_params
from karbor_site.db import is_uuid_like
from providers.constants import PARAMETER_KEY_RE
from providers.registry import get_registry
from karbor_site.api.renderers import empty_response
from karbor_site.api.viewsets import ProjectScopedViewSet, unwrap_body, validate_input
from karbor_site.tenancy.access import IsCloudAdmin, IsProjectMember
from protection import copies, quotas, registry, selectors, services
from protection.filters import CheckpointFilterSet, OperationLogFilterSet
from protection.models import Checkpoint, OperationLog, Service
from protection.serializers import (
    CheckpointCopyResultSerializer,
    CheckpointCopySerializer,
    CheckpointCreateSerializer,
    CheckpointSerializer,
    ResetStateSerializer,
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
class OperationLogViewSet(ProjectScopedViewSet):
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


# --- checkpoints ---------------------------------------------------------------------------
CLIENT_SORT_KEYS = {"id", "status", "name", "created_at"}
PROVIDER_PARAM = OpenApiParameter("provider_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Provider id.")
CHECKPOINT_PARAM = OpenApiParameter(
    "checkpoint_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Checkpoint id."
)
PROJECT_PARAM = OpenApiParameter("project_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="Project id.")
CheckpointEnvelope = envelope("CheckpointEnvelope", "checkpoint", CheckpointSerializer())
EmptyObject = inline_serializer(name="EmptyObject", fields={})
CopyRequestEnvelope = envelope("CheckpointCopyRequestEnvelope", "copy", CheckpointCopySerializer())
CopyResultEnvelope = envelope("CheckpointCopyResultEnvelope", "copy", CheckpointCopyResultSerializer())


def metadata_clean(value, *, field: str) -> dict:
    """Karbor's ``metadata`` type: null or an object of key → bool/string/int, keys ``^[a-zA-Z0-9-_:.# ]{1,255}$``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput.for_field(field, "must be an object of key: value (or null)")
    for key, item in value.items():
        if not isinstance(key, str) or not PARAMETER_KEY_RE.match(key):
            raise InvalidInput.for_field(f"{field}.{key}", "keys must match ^[a-zA-Z0-9-_:.# ]{1,255}$")
        if not isinstance(item, (bool, str, int)) or isinstance(item, float):
            raise InvalidInput.for_field(f"{field}.{key}", "values must be strings, integers or booleans")
    return dict(value)


@extend_schema_view(
    list=extend_schema(
        summary="List a provider's checkpoints",
        parameters=[
            PROJECT_PARAM,
            PROVIDER_PARAM,
            OpenApiParameter("limit", OpenApiTypes.INT, description="Page size (positive, capped by KARBOR_MAX_LIMIT)."),
            OpenApiParameter("marker", OpenApiTypes.STR, description="Id of the last checkpoint already seen."),
            OpenApiParameter("sort", OpenApiTypes.STR, description="Only the first direction counts: by creation time."),
            OpenApiParameter("sort_key", OpenApiTypes.STR, description="Deprecated; accepted, ordering is by creation time."),
            OpenApiParameter("sort_dir", OpenApiTypes.STR, description="asc or desc (default desc)."),
            OpenApiParameter("all_tenants", OpenApiTypes.BOOL, description="Cloud admins: every project's checkpoints."),
        ],
        responses=inline_serializer(
            name="CheckpointCollection",
            fields={"checkpoints": CheckpointSerializer(many=True), "checkpoints_links": LINKS},
        ),
    ),
    create=extend_schema(
        summary="Create a checkpoint of a plan (the protect flow runs in a worker; 409 while the plan has one protecting, 503 when the task queue is down)",
        parameters=[PROJECT_PARAM, PROVIDER_PARAM],
        request=envelope("CheckpointCreateEnvelope", "checkpoint", CheckpointCreateSerializer()),
        responses={200: CheckpointEnvelope},
    ),
    retrieve=extend_schema(
        summary="Show a checkpoint (deleted ones too, with status deleted)",
        parameters=[PROJECT_PARAM, PROVIDER_PARAM, CHECKPOINT_PARAM],
        responses=CheckpointEnvelope,
    ),
    destroy=extend_schema(
        summary="Delete a checkpoint (409 while it is protecting or deleting, or a restore or verification reads it); the body is {}",
        parameters=[PROJECT_PARAM, PROVIDER_PARAM, CHECKPOINT_PARAM],
        responses={200: EmptyObject},
    ),
    update=extend_schema(
        summary="Reset a checkpoint's state (project or cloud admin); the body is {}",
        parameters=[PROJECT_PARAM, PROVIDER_PARAM, CHECKPOINT_PARAM],
        request=envelope("CheckpointResetStateEnvelope", "os-resetState", ResetStateSerializer()),
        responses={200: EmptyObject},
    ),
)
class CheckpointViewSet(ProjectScopedViewSet):
    """A provider's checkpoints: the catalog of what its bank holds for the project."""

    queryset = Checkpoint.objects.all()
    serializer_class = CheckpointSerializer
    filterset_class = CheckpointFilterSet
    envelope = "checkpoint"
    collection = "checkpoints"
    sort_keys = CLIENT_SORT_KEYS
    allow_offset = False
    lookup_url_kwarg = "checkpoint_id"

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if getattr(self, "swagger_fake_view", False):
            return
        provider_id = self.kwargs["provider_id"]
        if not is_uuid_like(provider_id):
            raise InvalidInput.for_field("provider_id", f"{provider_id!r} is not a valid UUID")
        self.provider = get_registry().get(provider_id)

    def get_queryset(self):
        queryset = super().get_queryset()
        if getattr(self, "swagger_fake_view", False):
            return queryset
        return queryset.filter(provider_id=self.provider.id)

    def collection_path(self) -> str:
        return f"/v1/{self.project_id}/providers/{self.provider.id}/checkpoints"

    def list_params(self) -> ListParams:
        params = parse_list_params(self.request, sort_keys=self.sort_keys, allow_offset=False)
        # Karbor orders checkpoints by creation time; only the first direction counts.
        params.sort = [("created_at", params.sort[0][1] if params.sort else "desc")]
        return params

    def get_object(self, *, include_deleted: bool = False) -> Checkpoint:
        checkpoint_id = self.kwargs[self.lookup_url_kwarg]
        if not is_uuid_like(checkpoint_id):
            raise InvalidInput.for_field("checkpoint_id", f"{checkpoint_id!r} is not a valid UUID")
        return selectors.checkpoint_get(
            access=self.access, provider_id=self.provider.id, checkpoint_id=checkpoint_id,
            include_deleted=include_deleted,
        )

    def retrieve(self, request: Request, *args, **kwargs) -> Response:
        return self.single(self.get_object(include_deleted=True))

    def create(self, request: Request, *args, **kwargs) -> Response:
        body = unwrap_body(request, "checkpoint")
        if "extra-info" in body and "extra_info" in body:
            raise InvalidInput.for_field("extra_info", "give either 'extra-info' or 'extra_info', not both")
        data = validate_input(CheckpointCreateSerializer, body)
        key = "extra-info" if "extra-info" in body else "extra_info"
        extra_info = metadata_clean(body.get(key), field=key)
        checkpoint = services.checkpoint_create(
            project_id=self.project_id, provider_id=self.provider.id, plan_id=data["plan_id"], extra_info=extra_info
        )
        return self.single(checkpoint)

    @extend_schema(
        summary="Copy a plan's checkpoints into another provider's bank (parameters.destination_provider_id; "
                "only the chunks that bank lacks are sent; 503 when the task queue is down)",
        parameters=[PROJECT_PARAM, PROVIDER_PARAM],
        request=CopyRequestEnvelope,
        responses={200: CopyResultEnvelope},
    )
    def copy(self, request: Request, *args, **kwargs) -> Response:
        body = unwrap_body(request, "copy")
        unknown = sorted(set(body) - {"plan_id", "parameters"})
        if unknown:
            raise InvalidInput.for_field(f"copy.{unknown[0]}", "unknown field; copy takes plan_id and parameters")
        result = copies.checkpoint_copy_create(
            project_id=self.project_id, provider_id=self.provider.id, plan_id=body.get("plan_id"),
            parameters=body.get("parameters", {}),
        )
        return Response({"copy": result})

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        services.checkpoint_delete(checkpoint=self.get_object())
        return Response({})

    def update(self, request: Request, *args, **kwargs) -> Response:
        checkpoint = self.get_object()
        if not self.access.is_project_admin:
            raise NotAuthorized("Policy doesn't allow the state of a checkpoint to be reset: admins only.")
        data = validate_input(ResetStateSerializer, unwrap_body(request, "os-resetState"), prefix="os-resetState")
        services.checkpoint_reset_state(checkpoint=checkpoint, state=data["state"])
        return Response({})
