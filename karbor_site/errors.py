"""Domain errors: what services, flows and the runner raise (never HTTP responses).

Each carries the HTTP status the API answers with; ``karbor_site.api.exceptions`` maps them
(and Django's and DRF's own errors) to the OpenStack fault body.
"""
from __future__ import annotations


class KarborError(Exception):
    """Base of every domain error; services raise these, never HTTP responses."""

    status_code = 500
    default_message = "An unknown error occurred."

    def __init__(self, message: str | None = None, *, fields: dict[str, list[str]] | None = None):
        self.message = message or self.default_message
        self.fields = fields or {}
        super().__init__(self.message)


class InvalidInput(KarborError):
    status_code = 400
    default_message = "Invalid input received."

    @classmethod
    def for_field(cls, field: str, reason: str) -> "InvalidInput":
        return cls(f"{field}: {reason}", fields={field: [reason]})


class NotAuthorized(KarborError):
    status_code = 403
    default_message = "Not authorized."


class NotFound(KarborError):
    status_code = 404
    default_message = "Resource could not be found."


class Conflict(KarborError):
    status_code = 409
    default_message = "The request conflicts with the current state of the resource."


class QuotaExceeded(KarborError):
    status_code = 413
    default_message = "Quota exceeded."


class ServiceUnavailable(KarborError):
    status_code = 503
    default_message = "A backing service is unavailable; try again later."
