"""Token authentication as OpenStack clients send it: ``X-Auth-Token`` or ``Authorization: Token …``."""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from karbor_site.tenancy.models import AuthToken
from karbor_site.tenancy.services import token_digest

# Writing last_used_at on every request would serialise all API calls on one row.
LAST_USED_RESOLUTION = timedelta(minutes=5)


class KarborTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Token"

    def authenticate(self, request):
        raw = request.META.get("HTTP_X_AUTH_TOKEN")
        if not raw:
            header = authentication.get_authorization_header(request).split()
            if not header or header[0].lower() != self.keyword.lower().encode():
                return None
            if len(header) != 2:
                raise exceptions.AuthenticationFailed("Invalid token header.")
            raw = header[1].decode(errors="replace")
        return self._check(raw.strip())

    def _check(self, raw: str):
        token = AuthToken.objects.select_related("user").filter(digest=token_digest(raw)).first()
        if token is None or not token.is_active or not token.user.is_active:
            raise exceptions.AuthenticationFailed("The request you have made requires authentication.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            AuthToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request) -> str:
        return 'Token realm="karbor"'


class KarborTokenScheme(OpenApiAuthenticationExtension):
    target_class = "karbor_site.tenancy.authentication.KarborTokenAuthentication"
    name = "XAuthToken"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}
