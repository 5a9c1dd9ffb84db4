"""The scheduled-operation API: create / list / show / delete, and the `operations` envelope."""
import pytest
from django.utils import timezone

from triggers.models import ScheduledOperation
from triggers.tests.factories import INFRA_PROVIDER, make_operation, make_plan, make_trigger, operation_body

pytestmark = pytest.mark.django_db

UNKNOWN = "2a9ce1f3-cc1a-4516-9435-0ebb13caa398"


@pytest.fixture
def plan(owner):
    return make_plan(owner.project_id)


@pytest.fixture
def trigger(owner):
    return make_trigger(owner.project_id)


def post(tenant, body):
    return tenant.client.post(tenant.url("scheduled_operations"), body, format="json")


def fault(response) -> dict:
    return next(iter(response.json().values()))


def assert_refused(response, status: int, text: str) -> dict:
    assert response.status_code == status, response.content
    body = fault(response)
    assert text in body["message"], body
    assert ScheduledOperation.all_objects.count() == 0
    return body


def test_create_protect_operation_without_description(owner, plan, trigger):
    response = post(owner, operation_body(trigger.id, plan))
    assert response.status_code == 200, response.content
    op = response.json()["scheduled_operation"]
    assert op == {
        "id": op["id"],
        "name": "nightly",
        "description": None,
        "operation_type": "protect",
        "trigger_id": trigger.id,
        "operation_definition": {"provider_id": plan.provider_id, "plan_id": plan.id},
        "enabled": True,
        "next_run_at": trigger.next_fire_time(after=timezone.now()).strftime("%Y-%m-%d %H:%M:%S"),
        "last_run_at": None,
        "last_result": None,
    }
    stored = ScheduledOperation.objects.get(pk=op["id"])
    assert stored.project_id == owner.project_id and stored.user_id


def test_create_retention_protect_stores_definition_values_as_strings(owner, plan, trigger):
    body = operation_body(
        trigger.id,
        plan,
        operation_type="retention_protect",
        description="keep a week",
        definition={"max_backups": 7, "retention_duration": "30", "note": 3, "flag": True},
    )
    response = post(owner, body)
    assert response.status_code == 200, response.content
    op = response.json()["scheduled_operation"]
    assert op["description"] == "keep a week"
    assert op["operation_definition"] == {
        "provider_id": plan.provider_id,
        "plan_id": plan.id,
        "max_backups": "7",
        "retention_duration": "30",
        "note": "3",
        "flag": "True",
    }


@pytest.mark.parametrize(
    ("change", "text"),
    [
        ({"operation_type": "backup"}, "Invalid operation type"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"description": "d" * 256}, "description"),
        ({"trigger_id": "not-a-uuid"}, "trigger_id"),
        ({"trigger_id": 12}, "trigger_id"),
        ({"operation_definition": "plan"}, "operation_definition"),
        ({"operation_definition": {}}, "operation_definition.provider_id"),
        ({"operation_definition": {"provider_id": INFRA_PROVIDER}}, "operation_definition.plan_id"),
        ({"operation_definition": {"provider_id": "nope", "plan_id": UNKNOWN}}, "operation_definition.provider_id"),
        ({"operation_definition": {"provider_id": INFRA_PROVIDER, "plan_id": "plan-1"}}, "operation_definition.plan_id"),
        ({"operation_definition": {"provider_id": INFRA_PROVIDER, "plan_id": UNKNOWN, "x": {"a": 1}}}, "operation_definition.x"),
        ({"enabled": False}, "enabled"),
    ],
)
def test_invalid_bodies_are_refused_naming_the_field(owner, plan, trigger, change, text):
    body = operation_body(trigger.id, plan)
    body["scheduled_operation"].update(change)
    assert_refused(post(owner, body), 400, text)


@pytest.mark.parametrize("value", ["seven", 1.5, True, None, [1]])
def test_retention_values_must_be_integers(owner, plan, trigger, value):
    body = operation_body(trigger.id, plan, operation_type="retention_protect", definition={"max_backups": value})
    assert_refused(post(owner, body), 400, "operation_definition.max_backups")


@pytest.mark.parametrize("key", ["max_backups", "retention_duration", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"])
@pytest.mark.parametrize("value", [0, -1, "0", "-5"])
def test_retention_below_one_is_refused_naming_the_key(owner, plan, trigger, key, value):
    body = operation_body(trigger.id, plan, operation_type="retention_protect", definition={key: value})
    body = assert_refused(post(owner, body), 400, f"operation_definition.{key}")
    assert "at least 1" in body["message"]


def test_retention_keys_on_a_plain_protect_are_refused(owner, plan, trigger):
    body = operation_body(trigger.id, plan, definition={"max_backups": 3})
    assert_refused(post(owner, body), 400, "operation_definition.max_backups")


def test_gfs_keys_are_stored_as_strings(owner, plan, trigger):
    body = operation_body(
        trigger.id, plan, operation_type="retention_protect",
        definition={"keep_daily": 7, "keep_weekly": "4", "keep_monthly": 12, "keep_yearly": 2},
    )
    response = post(owner, body)
    assert response.status_code == 200, response.content
    definition = response.json()["scheduled_operation"]["operation_definition"]
    assert (definition["keep_daily"], definition["keep_weekly"], definition["keep_monthly"]) == ("7", "4", "12")


@pytest.mark.parametrize("body", [{}, [], {"scheduled_operation": "x"}, {"operation": {}}])
def test_bodies_without_the_envelope_are_400(owner, body):
    assert post(owner, body).status_code == 400


def test_malformed_json_and_empty_body_are_400(owner):
    for raw in ("{oops", ""):
        response = owner.client.post(owner.url("scheduled_operations"), raw, content_type="application/json")
        assert response.status_code == 400
    assert ScheduledOperation.all_objects.count() == 0


def test_missing_fields_are_named(owner):
    response = post(owner, {"scheduled_operation": {}})
    body = assert_refused(response, 400, "name")
    assert {"name", "operation_type", "trigger_id", "operation_definition"} <= set(body["fields"])


def test_unknown_trigger_or_plan_is_404(owner, plan, trigger):
    assert_refused(post(owner, operation_body(UNKNOWN, plan)), 404, f"Trigger {UNKNOWN}")
    body = operation_body(trigger.id, plan, definition={"plan_id": UNKNOWN})
    assert_refused(post(owner, body), 404, f"Plan {UNKNOWN}")


def test_deleted_trigger_or_plan_cannot_be_used(owner, plan, trigger):
    trigger.soft_delete()
    assert_refused(post(owner, operation_body(trigger.id, plan)), 404, "Trigger")
    live_trigger = make_trigger(owner.project_id)
    plan.soft_delete()
    assert_refused(post(owner, operation_body(live_trigger.id, plan)), 404, "Plan")


def test_another_projects_trigger_or_plan_is_refused(owner, stranger, plan, trigger):
    their_trigger = make_trigger(stranger.project_id)
    their_plan = make_plan(stranger.project_id)
    assert_refused(post(owner, operation_body(their_trigger.id, plan)), 404, "Trigger")
    assert_refused(post(owner, operation_body(trigger.id, their_plan)), 404, "Plan")
    assert_refused(post(stranger, operation_body(trigger.id, their_plan)), 404, "Trigger")


def test_provider_mismatch_is_400(owner, plan, trigger):
    body = operation_body(trigger.id, plan, definition={"provider_id": INFRA_PROVIDER})
    response_body = assert_refused(post(owner, body), 400, "Provider_id is conflict")
    assert response_body["message"] == "Invalid operation definition, reason:Provider_id is conflict"
    assert "operation_definition.provider_id" in response_body["fields"]


def test_show_and_list_use_karbor_envelopes(owner, plan, trigger):
    ops = [make_operation(owner.project_id, trigger, plan, name=f"op-{index}") for index in range(3)]
    shown = owner.client.get(owner.url(f"scheduled_operations/{ops[0].id}"))
    assert shown.status_code == 200
    assert shown.json()["scheduled_operation"]["name"] == "op-0"

    page = owner.client.get(owner.url("scheduled_operations"), {"limit": 2, "sort": "name:asc"}).json()
    assert set(page) == {"operations", "operations_links"}
    assert [item["name"] for item in page["operations"]] == ["op-0", "op-1"]
    href = page["operations_links"][0]["href"]
    assert f"/v1/{owner.project_id}/scheduled_operations?" in href
    rest = owner.client.get(href).json()
    assert [item["name"] for item in rest["operations"]] == ["op-2"] and rest["operations_links"] == []


def test_list_filters(owner, plan, trigger):
    other_trigger = make_trigger(owner.project_id, name="other")
    other_plan = make_plan(owner.project_id, name="other")
    make_operation(owner.project_id, trigger, plan, name="alpha")
    beta = make_operation(owner.project_id, other_trigger, other_plan, name="beta")
    beta.operation_type = "retention_protect"
    beta.save()

    def names(**params):
        return sorted(item["name"] for item in owner.client.get(owner.url("scheduled_operations"), params).json()["operations"])

    assert names(name="^al") == ["alpha"]
    assert names(operation_type="retention_protect") == ["beta"]
    assert names(trigger_id=other_trigger.id) == ["beta"]
    assert names(operation_definition=plan.id) == ["alpha"]
    assert owner.client.get(owner.url("scheduled_operations"), {"name": "[a"}).status_code == 400


def test_update_is_not_allowed(owner, plan, trigger):
    op = make_operation(owner.project_id, trigger, plan)
    response = owner.client.put(owner.url(f"scheduled_operations/{op.id}"), {"scheduled_operation": {"name": "x"}}, format="json")
    assert response.status_code == 405 and "badMethod" in response.json()
    op.refresh_from_db()
    assert op.name == "nightly"


def test_delete_soft_deletes_with_an_empty_200(owner, plan, trigger):
    op = make_operation(owner.project_id, trigger, plan)
    response = owner.client.delete(owner.url(f"scheduled_operations/{op.id}"))
    assert response.status_code == 200 and response.content == b""
    assert ScheduledOperation.all_objects.get(pk=op.id).deleted
    assert owner.client.get(owner.url(f"scheduled_operations/{op.id}")).status_code == 404
    assert owner.client.get(owner.url("scheduled_operations")).json()["operations"] == []


def test_show_unknown_is_404_and_non_uuid_is_400(owner):
    assert owner.client.get(owner.url(f"scheduled_operations/{UNKNOWN}")).status_code == 404
    assert owner.client.get(owner.url("scheduled_operations/abc")).status_code == 400
    assert owner.client.delete(owner.url("scheduled_operations/abc")).status_code == 400


def test_reader_can_read_but_not_write(owner, reader, plan, trigger):
    op = make_operation(owner.project_id, trigger, plan)
    assert reader.client.get(reader.url(f"scheduled_operations/{op.id}")).status_code == 200
    assert post(reader, operation_body(trigger.id, plan, name="mine")).status_code == 403
    assert reader.client.delete(reader.url(f"scheduled_operations/{op.id}")).status_code == 403
    assert ScheduledOperation.objects.count() == 1


def test_stranger_cannot_see_or_delete_the_owners_operations(owner, stranger, plan, trigger):
    op = make_operation(owner.project_id, trigger, plan)
    path = f"scheduled_operations/{op.id}"
    assert stranger.client.get(stranger.url(path)).status_code == 404
    assert stranger.client.delete(stranger.url(path)).status_code == 404
    assert stranger.client.get(stranger.url("scheduled_operations")).json()["operations"] == []
    assert stranger.client.get(stranger.url("scheduled_operations"), {"trigger_id": trigger.id}).json()["operations"] == []
    for response in (
        stranger.client.get(owner.url(path)),
        stranger.client.get(owner.url("scheduled_operations")),
        stranger.client.delete(owner.url(path)),
        stranger.client.post(owner.url("scheduled_operations"), operation_body(trigger.id, plan), format="json"),
    ):
        assert response.status_code == 403
    op.refresh_from_db()
    assert not op.deleted and ScheduledOperation.all_objects.count() == 1


def test_cloud_admin_lists_across_projects_with_all_tenants(owner, stranger, cloud_admin, plan, trigger):
    make_operation(owner.project_id, trigger, plan, name="mine")
    make_operation(stranger.project_id, make_trigger(stranger.project_id), make_plan(stranger.project_id), name="theirs")
    listed = cloud_admin.client.get(cloud_admin.url("scheduled_operations"), {"all_tenants": "true"}).json()["operations"]
    assert sorted(item["name"] for item in listed) == ["mine", "theirs"]
