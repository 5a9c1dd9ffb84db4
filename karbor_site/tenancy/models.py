"""Projects (Keystone-like tenants), who belongs to them with which role, and API tokens."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Role(models.TextChoices):
    ADMIN = "admin", "admin"
    MEMBER = "member", "member"
    READER = "reader", "reader"


class Project(models.Model):
    """A tenant. Its id is what clients put in ``/v1/{project_id}/…``, as with Keystone."""

    id = models.CharField(max_length=255, primary_key=True)
    name = models.CharField(max_length=255, blank=True, default="")
    description = models.CharField(max_length=255, blank=True, default="")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "projects"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})" if self.name else self.id


class Membership(models.Model):
    """A user's role in one project. Readers only read; members and admins write."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "project_memberships"
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="unique_project_member")]
        ordering = ["project_id", "user_id"]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.project_id}"

    @property
    def can_write(self) -> bool:
        return self.role in (Role.ADMIN, Role.MEMBER)


class AuthToken(models.Model):
    """An API token. Only its SHA-256 digest is stored; the secret is shown once, at issue."""

    digest = models.CharField(max_length=64, primary_key=True)
    prefix = models.CharField(max_length=8, help_text="First characters of the token, to recognise it.")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="auth_tokens")
    description = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "auth_tokens"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()
