"""Who may do what in which project.

A Django superuser is the cloud operator (Karbor's ``admin_api``): it acts in every project
and may list across projects with ``all_tenants``. Everyone else acts only inside projects
it is a member of; readers only read.
"""
from __future__ import annotations

from dataclasses import dataclass

from rest_framework import exceptions as drf
from rest_framework import permissions

from karbor_site.errors import NotAuthorized
from karbor_site.tenancy.models import Membership, Project, Role


@dataclass(frozen=True)
class ProjectAccess:
    project: Project
    role: str
    is_cloud_admin: bool

    @property
    def can_write(self) -> bool:
        return self.is_cloud_admin or self.role in (Role.ADMIN, Role.MEMBER)

    @property
    def is_project_admin(self) -> bool:
        return self.is_cloud_admin or self.role == Role.ADMIN


def resolve_access(user, project_id: str) -> ProjectAccess:
    """The caller's access to ``project_id``, or NotAuthorized (same answer whether or not it exists)."""
    denied = NotAuthorized(f"Not a member of project {project_id}.")
    if user.is_superuser:
        project = Project.objects.filter(id=project_id).first()
        if project is None:
            # The operator may address a project before it was registered; nothing is written.
            project = Project(id=project_id)
        return ProjectAccess(project=project, role=Role.ADMIN, is_cloud_admin=True)
    membership = Membership.objects.select_related("project").filter(project_id=project_id, user=user).first()
    if membership is None or not membership.project.enabled:
        raise denied
    return ProjectAccess(project=membership.project, role=membership.role, is_cloud_admin=False)


def _denied(message: str) -> drf.PermissionDenied:
    # DRF's own exception, not NotAuthorized: the browsable API re-checks permissions to decide
    # which forms to show and only expects APIException there (the fault body is the same).
    return drf.PermissionDenied(message)


class IsProjectMember(permissions.BasePermission):
    """Resolves ``request.access`` from the URL's ``project_id``; readers may only use safe methods."""

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        project_id = view.kwargs.get("project_id")
        if project_id is None:
            return True
        try:
            access = resolve_access(request.user, project_id)
        except NotAuthorized as exc:
            raise _denied(exc.message) from None
        request.access = access
        if request.method not in permissions.SAFE_METHODS and not access.can_write:
            raise _denied(f"Role {access.role} may not change anything in project {project_id}.")
        return True


class IsCloudAdmin(permissions.BasePermission):
    """Karbor's ``admin_api`` rule (services, quota updates)."""

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        if not request.user.is_superuser:
            raise _denied("Policy doesn't allow this operation to be performed.")
        return True
