"""Writes for tenancy: projects, memberships and tokens. One entry point for commands, admin and tests."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from karbor_site.errors import InvalidInput, NotFound
from karbor_site.tenancy.models import AuthToken, Membership, Project, Role

TOKEN_BYTES = 32


def token_digest(raw_token: str) -> str:
    # Tokens are 256 random bits, so a fast hash is as strong as a slow one and keeps auth cheap.
    return hashlib.sha256(raw_token.encode()).hexdigest()


def project_create(*, project_id: str, name: str = "", description: str = "") -> Project:
    """Create a project, or return the existing one (so scripts can be re-run)."""
    if not project_id or len(project_id) > 255 or "/" in project_id:
        raise InvalidInput.for_field("project_id", "must be 1-255 characters without '/'")
    project, created = Project.objects.get_or_create(id=project_id, defaults={"name": name, "description": description})
    if not created and name and project.name != name:
        project.name = name
        project.save(update_fields=["name"])
    return project


@transaction.atomic
def membership_set(*, project_id: str, username: str, role: str, create_user: bool = True) -> Membership:
    """Give ``username`` ``role`` in the project, creating the user (without a password) if missing."""
    if role not in Role.values:
        raise InvalidInput.for_field("role", f"must be one of {', '.join(Role.values)}")
    try:
        project = Project.objects.get(id=project_id)
    except Project.DoesNotExist:
        raise NotFound(f"Project {project_id} could not be found.") from None
    user_model = get_user_model()
    if create_user:
        user, created = user_model.objects.get_or_create(username=username)
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
    else:
        try:
            user = user_model.objects.get(username=username)
        except user_model.DoesNotExist:
            raise NotFound(f"User {username} could not be found.") from None
    membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    return membership


def token_issue(*, username: str, description: str = "", ttl_hours: int | None = None) -> str:
    """Issue a token for ``username`` and return the secret. Only its digest is kept."""
    user_model = get_user_model()
    try:
        user = user_model.objects.get(username=username)
    except user_model.DoesNotExist:
        raise NotFound(f"User {username} could not be found.") from None
    raw = secrets.token_urlsafe(TOKEN_BYTES)
    hours = ttl_hours if ttl_hours is not None else settings.KARBOR_TOKEN_TTL_HOURS
    AuthToken.objects.create(
        digest=token_digest(raw),
        prefix=raw[:8],
        user=user,
        description=description,
        expires_at=timezone.now() + timedelta(hours=hours),
    )
    return raw


def token_revoke(*, raw_token: str | None = None, prefix: str | None = None, username: str | None = None) -> int:
    """Revoke tokens by secret, by prefix, or all of a user's; returns how many were revoked."""
    tokens = AuthToken.objects.filter(revoked_at__isnull=True)
    if raw_token:
        tokens = tokens.filter(digest=token_digest(raw_token))
    elif prefix:
        tokens = tokens.filter(prefix=prefix)
    elif username:
        tokens = tokens.filter(user__username=username)
    else:
        raise InvalidInput("Name a token, a token prefix or a user to revoke.")
    return tokens.update(revoked_at=timezone.now())
