"""The one exception handler that turns every error (domain, Django, DRF) into an OpenStack fault.

python-karborclient only understands the fault shape: one top-level key named after the
status (``badRequest``, ``itemNotFound``…) holding ``code`` and ``message``. We add
``fields`` (field → reasons) so a script can tell which field was wrong without parsing text.
"""
from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

# Re-exported: the domain errors used to live here.
from karbor_site.errors import (  # noqa: F401
    Conflict,
    InvalidInput,
    KarborError,
    NotAuthorized,
    NotFound,
    QuotaExceeded,
    ServiceUnavailable,
)

log = logging.getLogger(__name__)

FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    501: "notImplemented",
    503: "serviceUnavailable",
}


def fault_body(status: int, message: str, fields: dict[str, list[str]] | None = None) -> dict[str, Any]:
    inner: dict[str, Any] = {"code": status, "message": message}
    if fields:
        inner["fields"] = fields
    return {FAULT_NAMES.get(status, "computeFault"): inner}


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error detail into ``{"resources.0.id": ["This field is required."]}``."""
    flat: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = key if key != "non_field_errors" or not prefix else ""
            path = ".".join(part for part in (prefix, str(name)) if part)
            flat.update(flatten_errors(value, path))
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            if detail:
                flat[prefix or "body"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                flat.update(flatten_errors(item, f"{prefix}.{index}" if prefix else str(index)))
    else:
        flat[prefix or "body"] = [str(detail)]
    return flat


def message_from_fields(fields: dict[str, list[str]]) -> str:
    parts = []
    for field, reasons in fields.items():
        reason = "; ".join(reasons)
        parts.append(reason if field in ("body", "non_field_errors") else f"{field}: {reason}")
    return " ".join(parts) or "Invalid input received."


def karbor_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every error becomes a fault body with the right status."""
    fields: dict[str, list[str]] | None = None
    headers: dict[str, str] = {}
    if isinstance(exc, KarborError):
        status, message, fields = exc.status_code, exc.message, exc.fields or None
    elif isinstance(exc, drf.ValidationError):
        fields = flatten_errors(exc.detail)
        status, message = 400, message_from_fields(fields)
    elif isinstance(exc, DjangoValidationError):
        fields = flatten_errors(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
        status, message = 400, message_from_fields(fields)
    elif isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        status, message = 401, str(exc.detail)
        headers["WWW-Authenticate"] = 'Token realm="karbor"'
    elif isinstance(exc, Http404):
        status, message = 404, str(exc) or "Resource could not be found."
    elif isinstance(exc, DjangoPermissionDenied):
        status, message = 403, str(exc) or "Policy doesn't allow this operation to be performed."
    elif isinstance(exc, drf.APIException):
        status, message = exc.status_code, _detail_text(exc.detail)
        if isinstance(exc, drf.Throttled) and exc.wait:
            headers["Retry-After"] = str(int(exc.wait))
    elif isinstance(exc, DatabaseError) and _is_unavailable(exc):
        log.exception("database unavailable")
        status, message = 503, "The database is unavailable; try again later."
    else:
        return None  # a real bug: let Django log it and answer through handler500
    response = Response(fault_body(status, message, fields), status=status, headers=headers)
    return response


def _detail_text(detail: Any) -> str:
    if isinstance(detail, (list, dict)):
        return message_from_fields(flatten_errors(detail))
    return str(detail)


def _is_unavailable(exc: DatabaseError) -> bool:
    from django.db import OperationalError

    return isinstance(exc, OperationalError)


def json_404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """handler404: unknown paths answer in the fault shape, as Karbor's router does."""
    return JsonResponse(fault_body(404, "The resource could not be found."), status=404)


def json_500(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        fault_body(500, "The server has either erred or is incapable of performing the requested operation."),
        status=500,
    )


def json_400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(fault_body(400, "Bad request."), status=400)


def json_403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(fault_body(403, "Forbidden."), status=403)
