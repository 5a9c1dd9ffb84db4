"""The plans admin: list, search, and the start / suspend actions that go through the services."""
from __future__ import annotations

from plans.models import Plan, PlanStatus
from plans.services import plan_create
from providers.testing import FS_PROVIDER_ID, OWNER_PROJECT


def make_plan(fs_provider, name="nightly") -> Plan:
    return plan_create(
        project_id=OWNER_PROJECT,
        provider_id=FS_PROVIDER_ID,
        name=name,
        resources=[{"id": fs_provider.id_of("data"), "type": "Filesystem::Directory", "name": "data"}],
        parameters={},
    )


def test_changelist_and_search(admin_client, fs_provider):
    make_plan(fs_provider, "nightly")
    make_plan(fs_provider, "weekly")
    response = admin_client.get("/admin/plans/plan/", {"q": "nightly"})
    assert response.status_code == 200
    assert b"nightly" in response.content and b"weekly" not in response.content


def test_change_page_shows_resources_inline(admin_client, fs_provider):
    plan = make_plan(fs_provider)
    response = admin_client.get(f"/admin/plans/plan/{plan.pk}/change/")
    assert response.status_code == 200
    assert fs_provider.id_of("data").encode() in response.content


def test_start_and_suspend_actions(admin_client, fs_provider):
    plan = make_plan(fs_provider)
    admin_client.post("/admin/plans/plan/", {"action": "start", "_selected_action": [plan.pk]})
    assert Plan.objects.get(pk=plan.pk).status == PlanStatus.STARTED
    response = admin_client.post("/admin/plans/plan/", {"action": "start", "_selected_action": [plan.pk]}, follow=True)
    assert b"only updated in suspended status" in response.content
    admin_client.post("/admin/plans/plan/", {"action": "suspend", "_selected_action": [plan.pk]})
    assert Plan.objects.get(pk=plan.pk).status == PlanStatus.SUSPENDED


def test_admin_delete_soft_deletes(admin_client, fs_provider):
    plan = make_plan(fs_provider)
    admin_client.post(f"/admin/plans/plan/{plan.pk}/delete/", {"post": "yes"})
    assert Plan.all_objects.get(pk=plan.pk).deleted
    assert not plan.resources.exists()
