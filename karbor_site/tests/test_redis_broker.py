"""The distributed shape's broker: the service on a real Redis server protects and restores."""
from __future__ import annotations

import secrets

import time

import pytest
import redis
from karborclient.client import Client

from karbor_site.testing.servers import REDIS_HOST, REDIS_PORT
from karbor_site.testing.live import live_service
from karbor_site.testing.servers import require_server

pytestmark = [pytest.mark.slow, pytest.mark.server]

REDIS_DB = 15  # a database of its own, emptied first: no stale message of another run is consumed


def wait_for(fetch, done: set[str], timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while (current := fetch()).status not in done:
        assert time.monotonic() < deadline, f"still {current.status!r} after {timeout:.0f}s"
        time.sleep(0.3)
    return current


def test_checkpoint_and_restore_through_a_redis_broker():
    require_server("Redis", REDIS_HOST, REDIS_PORT)
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    redis.Redis.from_url(url).flushdb()
    # The distributed shape refuses to start without a shared secret key, as an operator sets it.
    env = {"KARBOR_BROKER_URL": url, "KARBOR_SECRET_KEY": "redis-broker-test-" + secrets.token_urlsafe(32)}
    with live_service(extra_env=env) as service:
        assert "broker redis://" in service.log()
        client = Client("1", service.endpoint, token=service.token)
        provider = client.providers.list()[0]
        data = next(i for i in client.protectables.list_instances("Filesystem::Directory") if i.name.endswith("app-data"))
        plan = client.plans.create("redis", provider.id, [{"id": data.id, "type": data.type, "name": data.name}], {})
        checkpoint = client.checkpoints.create(provider.id, plan.id)
        assert wait_for(lambda: client.checkpoints.get(provider.id, checkpoint.id), {"available", "error"}).status == "available"
        target = service.data_dir.parent / "restore" / "copy"
        restore = client.restores.create(provider.id, checkpoint.id, str(target), {}, None)
        assert wait_for(lambda: client.restores.get(restore.id), {"success", "fail"}).status == "success"
        source = service.sources_dir / "app-data"
        for path in source.rglob("*"):
            if path.is_file():
                assert (target / path.relative_to(source)).read_bytes() == path.read_bytes()
