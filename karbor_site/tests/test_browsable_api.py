"""DRF's browsable API: a member logged in with a session sees HTML pages of its own project only."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.test import Client


def login(username: str, *, enforce_csrf_checks: bool = False) -> Client:
    user = get_user_model().objects.get(username=username)
    user.set_password("a-long-test-password")
    user.save()
    client = Client(enforce_csrf_checks=enforce_csrf_checks)
    assert client.login(username=username, password="a-long-test-password")
    return client


def test_logged_in_member_browses_plans_and_providers_as_html(owner):
    client = login(owner.username)
    for path in ("plans", "providers", "triggers", "protectables"):
        response = client.get(f"/v1/{owner.project_id}/{path}", HTTP_ACCEPT="text/html")
        assert response.status_code == 200, (path, response.content[:300])
        assert response["Content-Type"].startswith("text/html")
        assert b"Django REST framework" in response.content


def test_browsable_form_creates_a_trigger_with_the_session(owner):
    client = login(owner.username, enforce_csrf_checks=True)
    body = '{"trigger_info": {"name": "nightly", "type": "time", "properties": {"format": "crontab", "pattern": "0 2 * * *"}}}'
    response = client.post(f"/v1/{owner.project_id}/triggers", body, content_type="application/json",
                           HTTP_ACCEPT="application/json")
    # Session-authenticated writes need the CSRF token, as in any Django form.
    assert response.status_code == 403
    client = Client(enforce_csrf_checks=False)
    client.force_login(get_user_model().objects.get(username=owner.username))
    response = client.post(f"/v1/{owner.project_id}/triggers", body, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["trigger_info"]["name"] == "nightly"


def test_browsable_api_hides_another_project(owner, stranger):
    client = login(owner.username)
    response = client.get(f"/v1/{stranger.project_id}/plans", HTTP_ACCEPT="text/html")
    assert response.status_code in (403, 404)
    assert b"nightly" not in response.content


def test_anonymous_browser_is_asked_to_log_in(db):
    response = Client().get("/v1/demo/plans", HTTP_ACCEPT="text/html")
    assert response.status_code in (401, 403)
