"""The base viewset every ``/v1/{project_id}/…`` resource derives from.

It owns what is the same everywhere: tenancy (``request.access``), Karbor's envelopes,
listing (filters, sort, marker/limit/offset, next links), UUID checks on ids, and the
404-not-403 answer for another project's rows. Subclasses declare their model, envelope
names and serializers, and implement create/update as input serializer → one service call
→ output serializer.
"""
from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from karbor_site.api.exceptions import InvalidInput, NotFound, flatten_errors, message_from_fields
from karbor_site.api.listing import ListParams, next_links, paginate_queryset, parse_list_params
from karbor_site.db import is_uuid_like
from karbor_site.tenancy.access import IsProjectMember, ProjectAccess

TRUE_STRINGS = {"1", "true", "yes", "on", "y", "t"}


def unwrap_body(request: Request, key: str) -> dict[str, Any]:
    """The object inside Karbor's request envelope ``{key: {...}}``; anything else is a 400 naming ``key``."""
    data = request.data
    if not isinstance(data, dict) or not data:
        raise InvalidInput.for_field(key, f"the request body must be a JSON object {{\"{key}\": {{...}}}}")
    extra = sorted(set(data) - {key})
    if extra:
        raise InvalidInput.for_field(extra[0], f"unknown field; the body may only contain {key!r}")
    if key not in data:
        raise InvalidInput.for_field(key, "This field is required.")
    inner = data[key]
    if not isinstance(inner, dict):
        raise InvalidInput.for_field(key, "must be a JSON object")
    return inner


def validate_input(serializer_class: type[serializers.Serializer], data: Any, *, prefix: str = "", **kwargs) -> dict:
    """Run an input serializer; its errors become one 400 whose message names the fields."""
    serializer = serializer_class(data=data, **kwargs)
    if not serializer.is_valid():
        fields = flatten_errors(serializer.errors, prefix)
        raise InvalidInput(message_from_fields(fields), fields=fields)
    return serializer.validated_data


class StrictInputSerializer(serializers.Serializer):
    """An input serializer that rejects unknown keys (Karbor's ``additionalProperties: false``)."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["unknown field"] for name in unknown})
        return super().to_internal_value(data)


class ProjectScopedViewSet(viewsets.GenericViewSet):
    """Base of the tenant-facing Karbor resources under ``/v1/{project_id}/``."""

    permission_classes = [IsProjectMember]
    envelope: str = ""  # "plan"
    collection: str = ""  # "plans"
    sort_keys: set[str] = {"id", "status", "name", "created_at"}
    sort_field_map: dict[str, str] = {}
    allow_offset = True
    lookup_field = "pk"
    lookup_url_kwarg = "id"
    lookup_value_regex = "[^/]+"
    not_found_message = "{name} {id} could not be found."
    # Karbor answers 404 for another project's plans, restores…, so their existence does not leak.
    project_field = "project_id"

    # --- tenancy ---------------------------------------------------------------------
    @property
    def access(self) -> ProjectAccess:
        return self.request.access

    @property
    def project_id(self) -> str:
        return self.kwargs["project_id"]

    def wants_all_tenants(self) -> bool:
        raw = self.request.query_params.get("all_tenants", "")
        return self.access.is_cloud_admin and raw.strip().lower() in TRUE_STRINGS

    def get_queryset(self) -> QuerySet:
        queryset = super().get_queryset()
        if getattr(self, "swagger_fake_view", False):
            return queryset.none()
        if self.action == "list" and self.wants_all_tenants():
            return queryset
        return queryset.filter(**{self.project_field: self.project_id})

    def get_object(self):
        object_id = self.kwargs[self.lookup_url_kwarg]
        if not is_uuid_like(object_id):
            raise InvalidInput.for_field("id", f"{object_id!r} is not a valid UUID")
        obj = self.get_queryset().filter(pk=object_id).first()
        if obj is None:
            name = self.envelope.replace("_", " ").capitalize() or "Resource"
            raise NotFound(self.not_found_message.format(name=name, id=object_id))
        self.check_object_permissions(self.request, obj)
        return obj

    # --- envelopes -------------------------------------------------------------------
    def collection_path(self) -> str:
        return f"/v1/{self.project_id}/{self.collection}"

    def list_params(self) -> ListParams:
        return parse_list_params(self.request, sort_keys=self.sort_keys, allow_offset=self.allow_offset)

    def list(self, request: Request, *args, **kwargs) -> Response:
        params = self.list_params()
        queryset = self.filter_queryset(self.get_queryset())
        items = paginate_queryset(queryset, params, field_map=self.sort_field_map)
        data = self.get_serializer(items, many=True).data
        return Response(
            {self.collection: data, f"{self.collection}_links": next_links(request, self.collection_path(), items, params)}
        )

    def retrieve(self, request: Request, *args, **kwargs) -> Response:
        return self.single(self.get_object())

    def single(self, obj) -> Response:
        return Response({self.envelope: self.get_serializer(obj).data})
