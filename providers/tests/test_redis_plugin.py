"""``Redis::Database`` against the real Redis server (dbs 5, 6, 7) and a password-protected one of our own."""
from __future__ import annotations

import time

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured

from karbor_site.testing.servers import REDIS_HOST, REDIS_PORT
from karbor_site.errors import InvalidInput
from karbor_site.testing.servers import require_server
from providers.plugins.redis_db import RedisDatabasePlugin
from providers.tests import appkit
from providers.testing import OWNER_PROJECT, STRANGER_PROJECT

pytestmark = [pytest.mark.server, pytest.mark.django_db]

REDIS = "Redis::Database"
SOURCE_DB, TARGET_DB, THEIRS_DB = 5, 6, 7


def _source(name: str, db: int, projects, **extra):
    entry = {"name": name, "host": REDIS_HOST, "port": REDIS_PORT, "db": db, "timeout": 3, **extra}
    if projects is not None:
        entry["projects"] = projects
    return entry


@pytest.fixture
def clients():
    require_server("Redis", REDIS_HOST, REDIS_PORT)
    found = {db: redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db) for db in (SOURCE_DB, TARGET_DB, THEIRS_DB)}
    for client in found.values():
        client.flushdb()
    yield found
    for client in found.values():
        client.flushdb()
        client.close()


@pytest.fixture
def provider(provider_dir, tmp_path, clients):
    appkit.write_provider(provider_dir, tmp_path / "bank", {
        REDIS: {"plugin": "redis", "options": {
            "sources": [
                _source("cache", SOURCE_DB, [OWNER_PROJECT]),
                _source("theirs", THEIRS_DB, [STRANGER_PROJECT]),
                _source("undeclared-projects", THEIRS_DB, None),
            ],
            "restore_targets": [_source("scratch", TARGET_DB, [OWNER_PROJECT])],
        }},
    })
    return appkit.plugin(REDIS)


def instance_id(plugin, name: str, project_id: str = OWNER_PROJECT) -> str:
    (found,) = [i for i in plugin.list_instances(project_id=project_id, parameters={}) if i.name == name]
    return found.id


def fill(client: redis.Redis) -> None:
    """Every type, binary keys and values, keys with TTLs, and enough keys for several SCAN batches."""
    client.set("string", "hello")
    client.set(b"bin\x00key\xff", b"\x00\x01\x02" * 100)
    client.set("ttl:short", "soon", px=600_000)
    client.set("ttl:long", "later", ex=86_400)
    client.hset("hash", mapping={"a": "1", "b": "2", "c": "x" * 1000})
    client.rpush("list", *[f"item{i}" for i in range(300)])
    client.sadd("set", *[f"member{i}" for i in range(50)])
    client.zadd("zset", {f"z{i}": i / 3 for i in range(40)})
    client.xadd("stream", {"field": "value"})
    client.expire("hash", 3600)
    pipe = client.pipeline()
    for i in range(1500):
        pipe.set(f"bulk:{i}", f"value-{i}" * (i % 7 + 1))
    pipe.execute()


def value_of(client: redis.Redis, key: bytes, kind: bytes):
    """The logical value (a DUMP payload of a set or hash may differ in order after RESTORE)."""
    readers = {
        b"string": client.get,
        b"hash": client.hgetall,
        b"list": lambda k: client.lrange(k, 0, -1),
        b"set": client.smembers,
        b"zset": lambda k: client.zrange(k, 0, -1, withscores=True),
        b"stream": lambda k: client.xrange(k),
    }
    return readers[kind](key)


def snapshot(client: redis.Redis) -> dict[bytes, tuple[bytes, object, int]]:
    """key → (type, value, pttl) for every key of the database."""
    found = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        found[key] = (kind, value_of(client, key, kind), client.pttl(key))
    return found


def assert_same(expected: dict, actual: dict, *, ttl_slack_ms: int = 60_000) -> None:
    assert set(actual) == set(expected)
    for key, (kind, value, pttl) in expected.items():
        got_kind, got_value, got_pttl = actual[key]
        assert got_kind == kind and got_value == value, key
        if pttl < 0:
            assert got_pttl == -1, key
        else:
            assert 0 < got_pttl <= pttl + 1000 and got_pttl >= pttl - ttl_slack_ms, (key, pttl, got_pttl)


def test_protect_change_restore_in_place_brings_back_every_key_and_ttl(provider, clients):
    source = clients[SOURCE_DB]
    fill(source)
    before = snapshot(source)
    plan = appkit.make_plan(REDIS, [instance_id(provider, "cache")])
    checkpoint = appkit.protect(plan)
    assert checkpoint.status == "available", checkpoint.status_reason
    (saved,) = checkpoint.saved_info.values()
    assert saved["keys"] == len(before) == 1509
    assert saved["types"] == {"string": 1504, "hash": 1, "list": 1, "set": 1, "zset": 1, "stream": 1}
    assert saved["expiring_keys"] == 3 and saved["db"] == SOURCE_DB and saved["redis_version"]

    source.set("string", "changed")
    source.delete("hash", "ttl:short", "bulk:7")
    source.lpop("list")
    source.set("added-later", "1")

    refused = appkit.restore(checkpoint)  # the database holds keys and nothing confirms the overwrite
    assert refused.status == "fail"
    assert "confirm_overwrite" in next(iter(refused.resources_reason.values()))
    assert source.get("string") == b"changed" and not source.exists("hash")

    done = appkit.restore(checkpoint, {REDIS: {"confirm_overwrite": True, "flush": True}})
    assert done.status == "success", done.resources_reason
    assert_same(before, snapshot(source))

    verification = appkit.verify(checkpoint)
    assert verification.status == "success", verification.resources_reason


def test_restore_into_a_declared_target_keeps_ttls_and_leaves_the_source_alone(provider, clients):
    source, target = clients[SOURCE_DB], clients[TARGET_DB]
    fill(source)
    before = snapshot(source)
    checkpoint = appkit.protect(appkit.make_plan(REDIS, [instance_id(provider, "cache")]))
    assert checkpoint.status == "available", checkpoint.status_reason
    source.flushdb()

    done = appkit.restore(checkpoint, {REDIS: {"target": "scratch"}})
    assert done.status == "success", done.resources_reason
    assert_same(before, snapshot(target))
    assert source.dbsize() == 0
    (details,) = done.resources_status.values()
    assert details == "available"


def test_second_checkpoint_of_an_unchanged_database_stores_no_new_data(provider, clients):
    fill(clients[SOURCE_DB])
    plan = appkit.make_plan(REDIS, [instance_id(provider, "cache")])
    first = appkit.protect(plan)
    assert first.status == "available", first.status_reason
    stored = appkit.bank().stored_bytes()
    time.sleep(0.05)  # TTLs tick on: an expiry stored as time-left would change every record with one
    second = appkit.protect(plan)
    assert second.status == "available", second.status_reason
    (saved,) = second.saved_info.values()
    assert saved["keys"] == 1509 and saved["new_bytes"] == 0
    assert appkit.bank().stored_bytes() - stored < 16 * 1024


def test_absolute_ttl_mode_skips_keys_whose_expiry_passed(provider, clients):
    source, target = clients[SOURCE_DB], clients[TARGET_DB]
    source.set("gone-soon", "x", px=300)
    source.set("stays", "y")
    checkpoint = appkit.protect(appkit.make_plan(REDIS, [instance_id(provider, "cache")]))
    assert checkpoint.status == "available", checkpoint.status_reason
    time.sleep(0.4)
    done = appkit.restore(checkpoint, {REDIS: {"target": "scratch", "ttl": "absolute"}})
    assert done.status == "success", done.resources_reason
    assert target.get("stays") == b"y" and not target.exists("gone-soon")


def test_sources_are_deny_by_default_and_per_project(provider):
    owner = {i.name for i in provider.list_instances(project_id=OWNER_PROJECT, parameters={})}
    stranger = {i.name for i in provider.list_instances(project_id=STRANGER_PROJECT, parameters={})}
    assert owner == {"cache"} and stranger == {"theirs"}
    ids = {i.id for i in provider.list_instances(project_id=OWNER_PROJECT, parameters={})}
    assert ids == {i.id for i in appkit.plugin(REDIS).list_instances(project_id=OWNER_PROJECT, parameters={})}


def test_a_plan_with_an_instance_the_project_may_not_see_is_refused(provider):
    theirs = instance_id(provider, "theirs", STRANGER_PROJECT)
    with pytest.raises(InvalidInput) as caught:
        appkit.make_plan(REDIS, [theirs])
    assert "resources.0" in str(caught.value.detail if hasattr(caught.value, "detail") else caught.value)


def test_an_undeclared_restore_target_is_a_400_naming_the_parameter_and_creates_nothing(provider, clients):
    from restores.models import Restore

    clients[SOURCE_DB].set("k", "v")
    checkpoint = appkit.protect(appkit.make_plan(REDIS, [instance_id(provider, "cache")]))
    assert checkpoint.status == "available", checkpoint.status_reason
    with pytest.raises(InvalidInput) as caught:
        appkit.restore(checkpoint, {REDIS: {"target": "theirs"}})
    (reason,) = caught.value.fields[f"parameters.{REDIS}"]
    assert "'theirs' is not declared for this project" in reason and "scratch" in reason
    assert not Restore.all_objects.exists() and clients[THEIRS_DB].dbsize() == 0


def test_a_target_the_operator_removes_after_the_request_fails_the_restore_with_the_reason(
    provider, clients, provider_dir, tmp_path
):
    from restores.flows import restore_run
    from restores.services import restore_create

    clients[SOURCE_DB].set("k", "v")
    checkpoint = appkit.protect(appkit.make_plan(REDIS, [instance_id(provider, "cache")]))
    created = restore_create(project_id=OWNER_PROJECT, provider_id=appkit.PROVIDER_ID, checkpoint_id=checkpoint.id,
                             parameters={REDIS: {"target": "scratch"}}, enqueue=False)
    appkit.write_provider(provider_dir, tmp_path / "bank", {
        REDIS: {"plugin": "redis", "options": {"sources": [_source("cache", SOURCE_DB, [OWNER_PROJECT])]}}})
    failed = restore_run(restore_id=created.id)
    assert failed.status == "fail"
    assert "'scratch' is not declared for this project" in next(iter(failed.resources_reason.values()))
    assert clients[TARGET_DB].dbsize() == 0


def test_wrong_password_fails_the_checkpoint_within_seconds(provider_dir, tmp_path, settings):
    server = appkit.start_redis_server(tmp_path)
    try:
        settings.KARBOR_TEST_REDIS_PASSWORD = "not-the-password"
        appkit.write_provider(provider_dir, tmp_path / "bank", {
            REDIS: {"plugin": "redis", "options": {"sources": [
                {"name": "locked", "host": "127.0.0.1", "port": server.port, "db": 0, "timeout": 2,
                 "password_env": "KARBOR_TEST_REDIS_PASSWORD", "projects": ["*"]},
            ]}},
        })
        plugin = appkit.plugin(REDIS)
        plan = appkit.make_plan(REDIS, [instance_id(plugin, "locked")])
        started = time.monotonic()
        checkpoint = appkit.protect(plan)
        assert time.monotonic() - started < 10
        assert checkpoint.status == "error"
        reason = next(iter(checkpoint.resources_reason.values()))
        assert "authentication failed" in reason and "not-the-password" not in reason

        settings.KARBOR_TEST_REDIS_PASSWORD = server.password
        redis.Redis(port=server.port, password=server.password).set("k", "v")
        assert appkit.protect(plan).status == "available"
    finally:
        server.stop()


def test_an_unreachable_server_fails_within_the_timeout(provider_dir, tmp_path):
    from karbor_site.testing.servers import free_port

    appkit.write_provider(provider_dir, tmp_path / "bank", {
        REDIS: {"plugin": "redis", "options": {"sources": [
            {"name": "down", "host": "127.0.0.1", "port": free_port(), "timeout": 1, "projects": ["*"]},
        ]}},
    })
    plan = appkit.make_plan(REDIS, [instance_id(appkit.plugin(REDIS), "down")])
    started = time.monotonic()
    checkpoint = appkit.protect(plan)
    assert time.monotonic() - started < 10
    assert checkpoint.status == "error" and "cannot connect" in next(iter(checkpoint.resources_reason.values()))


def test_a_missing_password_variable_is_named(provider_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("KARBOR_TEST_NO_SUCH_VARIABLE", raising=False)
    appkit.write_provider(provider_dir, tmp_path / "bank", {
        REDIS: {"plugin": "redis", "options": {"sources": [
            {"name": "cache", "host": REDIS_HOST, "password_env": "KARBOR_TEST_NO_SUCH_VARIABLE", "projects": ["*"]},
        ]}},
    })
    checkpoint = appkit.protect(appkit.make_plan(REDIS, [instance_id(appkit.plugin(REDIS), "cache")]))
    assert checkpoint.status == "error"
    assert "KARBOR_TEST_NO_SUCH_VARIABLE" in next(iter(checkpoint.resources_reason.values()))


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"sources": [{"name": "a", "host": "h", "port": 0}]}, "options.sources.0.port"),
        ({"sources": [{"name": "a", "host": "h", "password": "x"}]}, "options.sources.0"),
        ({"sources": [{"name": "a", "host": "h"}, {"name": "a", "host": "i"}]}, "options.sources.1.name"),
        ({"restore_targets": [{"name": "t", "host": "h", "tls_ca_file": "/ca.pem"}]}, "options.restore_targets.0.tls_ca_file"),
    ],
)
def test_bad_operator_options_name_the_option(options, named):
    with pytest.raises(ImproperlyConfigured) as caught:
        RedisDatabasePlugin(options)
    assert named in str(caught.value)


def test_schemas_are_published_in_the_provider(provider):
    from providers.registry import get_registry

    schema = get_registry().get(appkit.PROVIDER_ID).extended_info_schema()
    assert set(schema["restore_schema"][REDIS]["properties"]) == {"target", "confirm_overwrite", "flush", "ttl"}
    assert "keys" in schema["saved_info_schema"][REDIS]["required"]
    assert "match" in schema["options_schema"][REDIS]["properties"]


def test_before_redis_7_expiries_are_rounded_instants_from_pttl(clients):
    from providers.plugins.declared import Declared
    from providers.plugins.redis_db import _dump_records, _parse

    client = clients[SOURCE_DB]
    client.set("ttl", "x", px=90_000)
    client.set("plain", "y")
    entry = Declared(name="cache", projects=("*",), settings={})
    state = {"keys": 0, "bytes": 0, "expiring": 0}
    now_ms = int(time.time() * 1000)
    records = {key: expire_at for _type, key, expire_at, _payload in
               _parse(_dump_records(client, entry, match="*", exact_expiry=False, counts={}, state=state))}
    assert records[b"plain"] == -1 and records[b"ttl"] % 1000 == 0
    assert abs(records[b"ttl"] - (now_ms + 90_000)) <= 1500 and state["expiring"] == 1
