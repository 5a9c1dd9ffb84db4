"""Quotas and quota classes: Karbor's shapes, admin-only updates, isolation."""
import pytest

from protection import quotas
from protection.models import Quota


def test_member_sees_default_quota_of_own_project(owner):
    response = owner.client.get(owner.url(f"quotas/{owner.project_id}"))
    assert response.status_code == 200
    assert response.json() == {"quota": {"plans": 50, "checkpoints": -1, "id": owner.project_id}}


def test_quota_detail_counts_live_plans(owner):
    from plans.models import Plan

    Plan.objects.create(name="a", provider_id="p", project_id=owner.project_id)
    gone = Plan.objects.create(name="b", provider_id="p", project_id=owner.project_id)
    gone.soft_delete()
    body = owner.client.get(owner.url(f"quotas/{owner.project_id}/detail")).json()["quota"]
    assert body["plans"] == {"limit": 50, "in_use": 1, "reserved": 0}


def test_member_cannot_read_another_projects_quota(owner, stranger):
    response = owner.client.get(owner.url(f"quotas/{stranger.project_id}"))
    assert response.status_code == 403


def test_project_admin_is_not_cloud_admin_for_updates(owner):
    response = owner.client.put(owner.url(f"quotas/{owner.project_id}"), {"quota": {"plans": 5}}, format="json")
    assert response.status_code == 403
    assert not Quota.objects.exists()


def test_cloud_admin_updates_and_resets_quota(cloud_admin, owner):
    url = cloud_admin.url(f"quotas/{owner.project_id}")
    response = cloud_admin.client.put(url, {"quota": {"plans": "7", "checkpoints": 3, "tenant_id": "x"}}, format="json")
    assert response.status_code == 200
    assert response.json() == {"quota": {"plans": 7, "checkpoints": 3}}
    assert owner.client.get(owner.url(f"quotas/{owner.project_id}")).json()["quota"]["plans"] == 7
    response = cloud_admin.client.delete(url)
    assert response.status_code == 200 and response.content == b""
    assert response["Content-Type"] == "application/json"
    assert quotas.quota_get(project_id=owner.project_id)["plans"] == 50


@pytest.mark.parametrize("value", [-2, "many", True, None])
def test_bad_quota_value_is_400_naming_field(cloud_admin, owner, value):
    response = cloud_admin.client.put(
        cloud_admin.url(f"quotas/{owner.project_id}"), {"quota": {"plans": value}}, format="json"
    )
    assert response.status_code == 400
    assert "quota.plans" in response.json()["badRequest"]["message"]
    assert not Quota.objects.exists()


def test_quota_class_default_changes_every_projects_default(cloud_admin, owner):
    response = cloud_admin.client.put(
        cloud_admin.url("quota_classes/default"), {"quota_class": {"plans": 10}}, format="json"
    )
    assert response.status_code == 200
    assert response.json() == {"quota_class": {"plans": 10, "checkpoints": -1}}
    shown = owner.client.get(owner.url("quota_classes/default")).json()
    assert shown == {"quota_class": {"plans": 10, "checkpoints": -1, "id": "default"}}
    assert owner.client.get(owner.url(f"quotas/{owner.project_id}/defaults")).json()["quota"]["plans"] == 10


def test_quota_check_raises_413_message(owner):
    from karbor_site.errors import QuotaExceeded
    from plans.models import Plan

    quotas.quota_set(project_id=owner.project_id, limits={"plans": 1})
    Plan.objects.create(name="a", provider_id="p", project_id=owner.project_id)
    with pytest.raises(QuotaExceeded, match=r"Maximum number of plans allowed \(1\) exceeded"):
        quotas.quota_check(project_id=owner.project_id, resource="plans")
