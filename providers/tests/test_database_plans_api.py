"""One plan with a directory, a PostgreSQL and a MySQL database and a Redis instance: protected and restored
through the API, in one checkpoint.

The API answers and enqueues; the captured task is then run in-process with the same flow
function the worker runs.
"""
from __future__ import annotations

from urllib.parse import quote as url_quote

import pytest
import redis

from karbor_site.testing.servers import MYSQL_HOST, MYSQL_PORT, PG_HOST, PG_PORT, REDIS_HOST, REDIS_PORT
from protection import flows, tasks
from protection.banks import forget_banks
from protection.tasks import verification_run_task
from protection.verifications import verification_run
from providers.testing import OWNER_PROJECT, write_provider_file
from providers.tests import test_mysql_plugin as my_kit
from providers.tests import test_postgresql_plugin as pg_kit
from providers.tests.dbkit import db_settings, require_server, require_tools, unique_name
from restores.flows import restore_run
from restores.tasks import restore_run_task

FS, PG, MY, REDIS = "Filesystem::Directory", "PostgreSQL::Database", "MySQL::Database", "Redis::Database"
REDIS_DB, REDIS_TARGET_DB = 8, 9  # other Redis tests use 5-7
PROVIDER_ID = "dbdbdbdb-0000-4000-8000-0000000000ab"

pytestmark = [pytest.mark.server, pytest.mark.usefixtures("db_settings")]
__all__ = ["db_settings"]


@pytest.fixture
def mixed(provider_dir, tmp_path):
    require_server("PostgreSQL", pg_kit.HOST, pg_kit.PORT)
    require_server("MariaDB", my_kit.HOST, my_kit.PORT)
    require_server("Redis", REDIS_HOST, REDIS_PORT)
    require_tools("pg_dump", "pg_restore", "mariadb-dump", "mariadb")
    caches = {db: redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db) for db in (REDIS_DB, REDIS_TARGET_DB)}
    for client in caches.values():
        client.flushdb()
    caches[REDIS_DB].set("session:1", "alice", ex=3600)
    caches[REDIS_DB].hset("user:1", mapping={"name": "alice", "plan": "gold"})
    caches[REDIS_DB].rpush("queue", "a", "b", "c")
    app, target = tmp_path / "app", tmp_path / "restore"
    app.mkdir()
    target.mkdir()
    (app / "config.yaml").write_text("answer: 42\n")
    names = {"pg": unique_name("karbor_pgt"), "my": unique_name("karbor_myt")}
    created = {"pg": [names["pg"]], "my": [names["my"]]}
    pg_kit.make_database(names["pg"])
    my_kit.make_database(names["my"])
    projects = {"projects": [OWNER_PROJECT]}
    pg_server, my_server = {"host": PG_HOST, **projects}, {"host": MYSQL_HOST, **projects}
    redis_server = {"host": REDIS_HOST, **projects}
    write_provider_file(provider_dir, {
        "id": PROVIDER_ID, "name": "mixed", "bank": {"type": "local", "path": str(tmp_path / "bank")},
        "plugins": {
            FS: {"plugin": "filesystem", "options": {
                "sources": [{"name": "app", "path": str(app), "projects": [OWNER_PROJECT]}],
                "restore_targets": [{"path": str(target), "projects": [OWNER_PROJECT]}]}},
            PG: {"plugin": "postgresql", "options": {
                "sources": [{"name": "pg", "port": PG_PORT, "user": "postgres", "databases": [names["pg"]], **pg_server}],
                "restore_targets": [{"name": "pg-scratch", "port": PG_PORT, "user": "postgres", **pg_server}]}},
            MY: {"plugin": "mysql", "options": {
                "sources": [{"name": "my", "port": MYSQL_PORT, "user": "root", "databases": [names["my"]], **my_server}]}},
            REDIS: {"plugin": "redis", "options": {
                "sources": [{"name": "cache", "port": REDIS_PORT, "db": REDIS_DB, **redis_server}],
                "restore_targets": [{"name": "cache-scratch", "port": REDIS_PORT, "db": REDIS_TARGET_DB, **redis_server}]}},
        },
    })
    forget_banks()
    yield {"app": app, "target": target, "names": names, "created": created, "redis": caches}
    for client in caches.values():
        client.flushdb()
        client.close()
    for name in created["pg"]:
        pg_kit.drop_database(name)
    for name in created["my"]:
        my_kit.execute(f"DROP DATABASE IF EXISTS {my_kit.quote(name)}")
    forget_banks()


def only_instance(owner, resource_type: str) -> dict:
    response = owner.client.get(owner.url(f"protectables/{url_quote(resource_type)}/instances"))
    assert response.status_code == 200, response.content
    instances = response.json()["instances"]
    assert len(instances) == 1, instances
    return instances[0]


def redis_contents(client) -> dict:
    return {key: (client.type(key), client.dump(key), client.ttl(key) > 0) for key in client.scan_iter()}


def test_one_checkpoint_protects_and_restores_a_directory_two_databases_and_redis(
    db, owner, mixed, monkeypatch, django_capture_on_commit_callbacks
):
    names = mixed["names"]
    pg_before, my_before = pg_kit.contents(names["pg"]), my_kit.contents(names["my"])
    redis_before = redis_contents(mixed["redis"][REDIS_DB])
    resources = [{"id": i["id"], "type": i["type"], "name": i["name"]} for i in (
        only_instance(owner, FS), only_instance(owner, PG), only_instance(owner, MY), only_instance(owner, REDIS))]
    assert [r["name"] for r in resources][:3] == ["app", f"pg/{names['pg']}", f"my/{names['my']}"]
    response = owner.client.post(owner.url("plans"), {"plan": {
        "name": "app with databases", "provider_id": PROVIDER_ID, "resources": resources, "parameters": {}}}, format="json")
    assert response.status_code == 200, response.content
    plan_id = response.json()["plan"]["id"]

    sent: list[str] = []
    monkeypatch.setattr(tasks.checkpoint_protect, "delay", lambda checkpoint_id: sent.append(checkpoint_id))
    with django_capture_on_commit_callbacks(execute=True):
        response = owner.client.post(owner.url(f"providers/{PROVIDER_ID}/checkpoints"),
                                     {"checkpoint": {"plan_id": plan_id}}, format="json")
    assert response.status_code == 200, response.content
    flows.checkpoint_protect_run(checkpoint_id=sent[0], worker="test-worker:1")
    checkpoint = owner.client.get(owner.url(f"providers/{PROVIDER_ID}/checkpoints/{sent[0]}")).json()["checkpoint"]
    assert checkpoint["status"] == "available", checkpoint

    # Verify through the API: every resource's data is read back and checked by its plugin.
    verifying: list[str] = []
    monkeypatch.setattr(verification_run_task, "delay", lambda verification_id: verifying.append(verification_id))
    with django_capture_on_commit_callbacks(execute=True):
        response = owner.client.post(owner.url("verifications"), {"verification": {
            "provider_id": PROVIDER_ID, "checkpoint_id": sent[0], "parameters": {}}}, format="json")
    assert response.status_code == 200, response.content
    verification_run(verification_id=verifying[0], worker="test-worker:1")
    verified = owner.client.get(owner.url(f"verifications/{verifying[0]}")).json()["verification"]
    assert verified["status"] == "success", verified
    assert set(verified["resources_status"].values()) == {"available"} and len(verified["resources_status"]) == 4
    graph = str(checkpoint["resource_graph"])
    assert all(r["id"] in graph for r in resources), graph

    # Damage all four, then restore everything from the one checkpoint.
    (mixed["app"] / "config.yaml").write_text("answer: wrong\n")
    mixed["redis"][REDIS_DB].flushdb()
    pg_kit.execute(names["pg"], "DELETE FROM orders")
    my_kit.execute("DELETE FROM orders", database=names["my"])
    pg_copy, my_copy = unique_name("karbor_pgt_copy"), unique_name("karbor_myt_copy")
    mixed["created"]["pg"].append(pg_copy)
    mixed["created"]["my"].append(my_copy)
    restored: list[str] = []
    monkeypatch.setattr(restore_run_task, "delay", lambda restore_id: restored.append(restore_id))
    body = {"restore": {
        "provider_id": PROVIDER_ID, "checkpoint_id": sent[0], "restore_target": str(mixed["target"]), "restore_auth": None,
        "parameters": {PG: {"database": pg_copy, "target": "pg-scratch"}, MY: {"database": my_copy},
                       REDIS: {"target": "cache-scratch"}}}}
    with django_capture_on_commit_callbacks(execute=True):
        response = owner.client.post(owner.url("restores"), body, format="json")
    assert response.status_code == 200, response.content
    restore_run(restore_id=restored[0], worker="test-worker:1")
    result = owner.client.get(owner.url(f"restores/{restored[0]}")).json()["restore"]
    assert result["status"] == "success", result
    assert (mixed["target"] / "config.yaml").read_text() == "answer: 42\n"
    assert pg_kit.contents(pg_copy) == pg_before
    assert my_kit.contents(my_copy) == my_before
    assert redis_contents(mixed["redis"][REDIS_TARGET_DB]) == redis_before and redis_before


def protected_database(owner, monkeypatch, capture) -> str:
    """A plan of the PostgreSQL database alone, checkpointed through the API; the checkpoint's id."""
    resources = [{"id": i["id"], "type": i["type"], "name": i["name"]} for i in (only_instance(owner, PG),)]
    plan = owner.client.post(owner.url("plans"), {"plan": {
        "name": "db", "provider_id": PROVIDER_ID, "resources": resources, "parameters": {}}}, format="json").json()["plan"]
    sent: list[str] = []
    monkeypatch.setattr(tasks.checkpoint_protect, "delay", lambda checkpoint_id: sent.append(checkpoint_id))
    with capture(execute=True):
        owner.client.post(owner.url(f"providers/{PROVIDER_ID}/checkpoints"), {"checkpoint": {"plan_id": plan["id"]}},
                          format="json")
    flows.checkpoint_protect_run(checkpoint_id=sent[0], worker="test-worker:1")
    return sent[0]


def test_a_restore_target_that_is_no_declared_server_is_a_400_naming_it(
    db, owner, mixed, monkeypatch, django_capture_on_commit_callbacks
):
    checkpoint_id = protected_database(owner, monkeypatch, django_capture_on_commit_callbacks)
    response = owner.client.post(owner.url("restores"), {"restore": {
        "provider_id": PROVIDER_ID, "checkpoint_id": checkpoint_id, "restore_target": "db.example.com",
        "parameters": {}}}, format="json")
    assert response.status_code == 400, response.content
    fault = response.json()["badRequest"]
    assert "restore target 'db.example.com' is not a declared PostgreSQL server" in fault["fields"]["restore_target"][0]


def test_a_target_parameter_that_is_no_declared_server_is_a_400_naming_the_parameter(
    db, owner, mixed, monkeypatch, django_capture_on_commit_callbacks
):
    checkpoint_id = protected_database(owner, monkeypatch, django_capture_on_commit_callbacks)
    from restores.models import Restore

    before = Restore.all_objects.count()
    response = owner.client.post(owner.url("restores"), {"restore": {
        "provider_id": PROVIDER_ID, "checkpoint_id": checkpoint_id, "restore_target": None,
        "parameters": {PG: {"database": "elsewhere", "target": "prod-db"}}}}, format="json")
    assert response.status_code == 400, response.content
    fault = response.json()["badRequest"]
    assert "prod-db" in fault["message"] and f"parameters.{PG}" in fault["fields"]
    assert Restore.all_objects.count() == before
