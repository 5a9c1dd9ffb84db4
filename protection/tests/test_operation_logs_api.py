"""GET /operation_logs: Karbor's envelopes, the rows the flows write, and tenant isolation."""
from __future__ import annotations

from protection import flows, services
from protection.tests.flowkit import make_plan
from providers import testing as provider_testing
from providers.testing import FS_PROVIDER_ID, OWNER_PROJECT

fs_provider = provider_testing.fs_provider
provider_dir = provider_testing.provider_dir


def test_a_protect_is_listed_and_shown_in_karbors_envelopes(owner, stranger, fs_provider):
    assert owner.project_id == OWNER_PROJECT
    plan = make_plan(fs_provider)
    checkpoint = services.checkpoint_create(
        project_id=OWNER_PROJECT, provider_id=FS_PROVIDER_ID, plan_id=plan.id, enqueue=False
    )
    flows.checkpoint_protect_run(checkpoint_id=checkpoint.id, worker="test-worker:1")

    response = owner.client.get(owner.url("operation_logs"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"operation_logs", "operation_logs_links"}
    (log,) = body["operation_logs"]
    assert (log["operation_type"], log["status"], log["checkpoint_id"], log["plan_id"]) == (
        "protect", "available", checkpoint.id, plan.id,
    )
    assert log["started_at"] and log["ended_at"]

    shown = owner.client.get(owner.url(f"operation_logs/{log['id']}"))
    assert shown.status_code == 200
    assert shown.json()["operation_log"]["id"] == log["id"]

    filtered = owner.client.get(owner.url("operation_logs"), {"checkpoint_id": checkpoint.id}).json()
    assert [row["id"] for row in filtered["operation_logs"]] == [log["id"]]

    assert stranger.client.get(stranger.url("operation_logs")).json()["operation_logs"] == []
    assert stranger.client.get(stranger.url(f"operation_logs/{log['id']}")).status_code == 404
