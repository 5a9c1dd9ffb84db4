"""The conventions every endpoint shares: versions document, auth, faults, tenancy."""
import pytest


def test_root_answers_with_versions_document(client):
    response = client.get("/")
    assert response.status_code == 300
    assert response["Content-Type"] == "application/json"
    assert response.json()["versions"][0]["id"] == "v1.0"
    assert response["x-openstack-request-id"].startswith("req-")


@pytest.mark.django_db
def test_unknown_path_is_a_json_fault(client):
    response = client.get("/v1/some-project/no-such-collection")
    assert response.status_code == 404
    assert response.json()["itemNotFound"]["code"] == 404


@pytest.mark.django_db
def test_missing_token_is_401_fault(client):
    response = client.get("/v1/some-project/plans")
    assert response.status_code == 401
    assert "unauthorized" in response.json()


def test_bad_token_is_401(owner):
    owner.client.credentials(HTTP_X_AUTH_TOKEN="not-a-token")
    response = owner.client.get(owner.url("plans"))
    assert response.status_code == 401


def test_authorization_token_header_works(owner):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {owner.token}")
    assert client.get(owner.url("plans")).status_code == 200


def test_revoked_token_is_refused(owner):
    from karbor_site.tenancy.services import token_revoke

    assert token_revoke(raw_token=owner.token) == 1
    assert owner.client.get(owner.url("plans")).status_code == 401


def test_expired_token_is_refused(owner):
    from django.utils import timezone

    from karbor_site.tenancy.models import AuthToken

    AuthToken.objects.update(expires_at=timezone.now())
    assert owner.client.get(owner.url("plans")).status_code == 401


def test_token_is_stored_hashed(owner):
    from karbor_site.tenancy.models import AuthToken

    assert not AuthToken.objects.filter(digest=owner.token).exists()
    assert not AuthToken.objects.filter(prefix=owner.token).exists()


def test_non_member_gets_403_for_any_project_path(owner, stranger):
    response = stranger.client.get(owner.url("plans"))
    assert response.status_code == 403
    assert response.json()["forbidden"]["message"]


def test_reader_cannot_write(reader):
    response = reader.client.post(reader.url("plans"), {"plan": {}}, format="json")
    assert response.status_code == 403
