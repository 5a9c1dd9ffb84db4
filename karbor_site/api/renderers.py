"""JSON rendering as Karbor does it."""
from django.http import HttpResponse
from rest_framework.renderers import JSONRenderer


class KarborJSONRenderer(JSONRenderer):
    """Plain ``application/json`` (no charset parameter, as keystone-era clients expect)."""

    charset = None


def empty_response(status: int = 200) -> HttpResponse:
    """An empty body that still says ``Content-Type: application/json``.

    Karbor answers DELETE with 200 and no body; DRF's Response would drop the header.
    """
    return HttpResponse(b"", status=status, content_type="application/json")
