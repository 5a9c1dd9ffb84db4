"""The operator's admin pages for triggers and scheduled operations."""
import pytest
from django.urls import reverse

from triggers.models import ScheduledOperation, Trigger
from triggers.tests.factories import make_operation, make_plan, make_trigger

pytestmark = pytest.mark.django_db

PROJECT = "e486a2f49695423ca9c47e589b948108"


def test_changelists_and_detail_pages_render(admin_client):
    trigger = make_trigger(PROJECT)
    operation = make_operation(PROJECT, trigger, make_plan(PROJECT))
    for url in (
        reverse("admin:triggers_trigger_changelist"),
        reverse("admin:triggers_trigger_changelist") + "?q=weekly&deleted__exact=0",
        reverse("admin:triggers_trigger_change", args=[trigger.id]),
        reverse("admin:triggers_scheduledoperation_changelist") + "?operation_type__exact=protect",
        reverse("admin:triggers_scheduledoperation_change", args=[operation.id]),
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
    assert b"weekly" in admin_client.get(reverse("admin:triggers_trigger_changelist")).content


def test_delete_action_refuses_triggers_in_use_and_deletes_the_rest(admin_client):
    used = make_trigger(PROJECT, name="used")
    free = make_trigger(PROJECT, name="free")
    operation = make_operation(PROJECT, used, make_plan(PROJECT))
    response = admin_client.post(
        reverse("admin:triggers_trigger_changelist"),
        {"action": "soft_delete", "_selected_action": [used.id, free.id]},
        follow=True,
    )
    assert response.status_code == 200
    assert b"being used" in response.content
    assert list(Trigger.objects.values_list("name", flat=True)) == ["used"]

    admin_client.post(
        reverse("admin:triggers_scheduledoperation_changelist"),
        {"action": "soft_delete", "_selected_action": [operation.id]},
    )
    assert ScheduledOperation.all_objects.get(pk=operation.id).deleted
