"""os-services: the worker registry as Karbor shows it; admin-only."""
from datetime import timedelta

import pytest

from django.utils import timezone

from protection import registry
from protection.models import Service


def test_registered_services_are_listed_with_state(cloud_admin):
    up = registry.service_register(host="node-a", binary=registry.PROTECTION_BINARY)
    down = registry.service_register(host="node-b", binary=registry.OPERATION_ENGINE_BINARY)
    Service.objects.filter(pk=down.pk).update(modified_at=timezone.now() - timedelta(minutes=5))
    response = cloud_admin.client.get(cloud_admin.url("os-services"))
    assert response.status_code == 200
    states = {item["host"]: (item["state"], item["status"]) for item in response.json()["services"]}
    assert states == {"node-a": ("up", "enabled"), "node-b": ("down", "enabled")}
    filtered = cloud_admin.client.get(cloud_admin.url("os-services?binary=karbor-protection")).json()
    assert [item["id"] for item in filtered["services"]] == [up.pk]


@pytest.mark.django_db
def test_heartbeat_counts_reports():
    service = registry.service_register(host="h", binary="karbor-protection")
    assert registry.service_heartbeat(service_id=service.pk)
    service.refresh_from_db()
    assert service.report_count == 2


def test_admin_disables_operation_engine_with_reason(cloud_admin):
    engine = registry.service_register(host="n", binary=registry.OPERATION_ENGINE_BINARY)
    url = cloud_admin.url(f"os-services/{engine.pk}")
    response = cloud_admin.client.put(url, {"status": "disabled", "disabled_reason": "maintenance"}, format="json")
    assert response.status_code == 200
    assert response.json()["service"]["status"] == "disabled"
    assert response.json()["service"]["disabled_reason"] == "maintenance"
    response = cloud_admin.client.put(url, {"status": "enabled", "disabled_reason": "x"}, format="json")
    assert response.status_code == 400
    engine.refresh_from_db()
    assert engine.disabled


def test_a_worker_follows_its_disabled_flag_at_each_heartbeat(cloud_admin):
    worker = registry.service_register(host="n", binary=registry.PROTECTION_BINARY)
    seen = []
    heartbeat = registry.Heartbeat(host="n", binary=registry.PROTECTION_BINARY, on_disabled_change=seen.append)
    heartbeat.start()
    heartbeat.stop()
    response = cloud_admin.client.put(cloud_admin.url(f"os-services/{worker.pk}"), {"status": "disabled"}, format="json")
    assert response.status_code == 200
    heartbeat.beat()
    heartbeat.beat()
    assert seen == [True]
    cloud_admin.client.put(cloud_admin.url(f"os-services/{worker.pk}"), {"status": "enabled"}, format="json")
    heartbeat.beat()
    assert seen == [True, False]


def test_other_services_cannot_be_updated(cloud_admin):
    other = registry.service_register(host="n", binary="karbor-api")
    response = cloud_admin.client.put(cloud_admin.url(f"os-services/{other.pk}"), {"status": "disabled"}, format="json")
    assert response.status_code == 400


def test_unknown_service_is_404(cloud_admin):
    response = cloud_admin.client.put(cloud_admin.url("os-services/999"), {"status": "disabled"}, format="json")
    assert response.status_code == 404


def test_members_cannot_see_services(owner):
    assert owner.client.get(owner.url("os-services")).status_code == 403
