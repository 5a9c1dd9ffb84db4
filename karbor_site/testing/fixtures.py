"""pytest fixtures: a project with an owner, a teammate and a reader, a stranger's project, API clients."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from karbor_site.tenancy.models import Role
from karbor_site.tenancy.services import membership_set, project_create, token_issue


@dataclass
class Tenant:
    """A user acting in a project through the API, with its token already set."""

    project_id: str
    username: str
    token: str
    client: APIClient

    def url(self, path: str = "") -> str:
        return f"/v1/{self.project_id}/{path.lstrip('/')}"


def make_tenant(project_id: str, username: str, role: str = Role.MEMBER) -> Tenant:
    project_create(project_id=project_id, name=project_id)
    membership_set(project_id=project_id, username=username, role=role)
    token = token_issue(username=username)
    client = APIClient()
    client.credentials(HTTP_X_AUTH_TOKEN=token)
    return Tenant(project_id=project_id, username=username, token=token, client=client)


@pytest.fixture
def owner(db) -> Tenant:
    return make_tenant("e486a2f49695423ca9c47e589b948108", "alice", Role.ADMIN)


@pytest.fixture
def teammate(owner) -> Tenant:
    return make_tenant(owner.project_id, "bob", Role.MEMBER)


@pytest.fixture
def reader(owner) -> Tenant:
    return make_tenant(owner.project_id, "rita", Role.READER)


@pytest.fixture
def stranger(db) -> Tenant:
    return make_tenant("5d3242420cb641ac840cd4ae37af0f18", "mallory", Role.ADMIN)


@pytest.fixture
def cloud_admin(db) -> Tenant:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_superuser("operator", "operator@example.com", "operator-password-1")
    token = token_issue(username=user.username)
    client = APIClient()
    client.credentials(HTTP_X_AUTH_TOKEN=token)
    return Tenant(project_id="e486a2f49695423ca9c47e589b948108", username="operator", token=token, client=client)
