"""Request ids as OpenStack services send them."""
import uuid

from django.http import HttpRequest, HttpResponse


class RequestIdMiddleware:
    """Tag every response with ``x-openstack-request-id`` and ``x-compute-request-id``.

    python-karborclient reads the request id from either header to report errors.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = f"req-{uuid.uuid4()}"
        request.karbor_request_id = request_id
        response = self.get_response(request)
        response["x-openstack-request-id"] = request_id
        response["x-compute-request-id"] = request_id
        return response
