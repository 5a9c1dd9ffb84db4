"""The checkpoint admin: the catalog cannot be hand-edited; only the guarded actions change a status."""
from __future__ import annotations

from protection.models import Checkpoint

OWNER = "e486a2f49695423ca9c47e589b948108"
OTHER = "5d3242420cb641ac840cd4ae37af0f18"


def full_form(checkpoint: Checkpoint) -> dict[str, str]:
    """Every column of the row as a change form would post it (so only read-only-ness can stop an edit)."""
    data: dict[str, str] = {}
    for field in Checkpoint._meta.fields:
        if field.name in ("created_at", "updated_at", "deleted_at", "heartbeat_at", "deleted"):
            continue
        data[field.name] = field.value_to_string(checkpoint) or ""
    return data


def make_checkpoint(**fields) -> Checkpoint:
    # Non-empty JSON and totals: the admin's JSON form fields take {} for "missing".
    defaults = dict(
        project_id=OWNER, provider_id="a7a1c0de-0000-4000-8000-00000000f5f5",
        plan_id="11111111-1111-4111-8111-111111111111", protection_plan={"name": "nightly"},
        resource_graph={"nodes": 1}, resources_status={"r": "error"}, resources_reason={"r": "disk full"},
        saved_info={"r": {}}, extra_info={"why": "test"}, bytes_total=10, items_total=1,
    )
    return Checkpoint.objects.create(**{**defaults, **fields})


def test_change_view_post_cannot_edit_status_owner_or_plan(admin_client, db):
    checkpoint = make_checkpoint(status="error", status_reason="disk full")
    form = full_form(checkpoint)
    form.update(
        status="available", project_id=OTHER, plan_id="22222222-2222-4222-8222-222222222222",
        extra_info='{"note": "checked by ops"}',
    )
    response = admin_client.post(f"/admin/protection/checkpoint/{checkpoint.pk}/change/", form)
    assert response.status_code == 302, response.content[:2000]
    checkpoint.refresh_from_db()
    assert (checkpoint.status, checkpoint.project_id, checkpoint.plan_id) == (
        "error", OWNER, "11111111-1111-4111-8111-111111111111"
    )
    assert checkpoint.extra_info == {"note": "checked by ops"}  # the post itself was accepted


def test_change_view_shows_status_read_only(admin_client, db):
    checkpoint = make_checkpoint(status="available")
    page = admin_client.get(f"/admin/protection/checkpoint/{checkpoint.pk}/change/").content.decode()
    assert 'name="status"' not in page and 'name="project_id"' not in page and 'name="plan_id"' not in page
    assert 'name="extra_info"' in page
