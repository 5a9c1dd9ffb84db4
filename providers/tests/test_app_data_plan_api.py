"""One plan mixing a directory, a Redis database and an S3 bucket: protected and restored through the API in one checkpoint."""
from __future__ import annotations

import boto3
import pytest
import redis

from karbor_site.testing.servers import REDIS_HOST, REDIS_PORT
from karbor_site.testing.servers import require_server
from protection import flows as protect_flows
from protection import tasks as protection_tasks
from protection.tests.bank.s3server import ACCESS_KEY, REGION, SECRET_KEY
from protection.tests.flowkit import fill_tree, trees_equal
from providers.plugins.filesystem import directory_id
from providers.tests import appkit
from restores import flows as restore_flows
from restores.tasks import restore_run_task

# The shared fixture: a moto S3 server process for the module.
s3_server = appkit.s3_server

pytestmark = [pytest.mark.server, pytest.mark.django_db]

FS, REDIS, S3 = "Filesystem::Directory", "Redis::Database", "S3::Bucket"
DB = 7


@pytest.fixture
def app(owner, provider_dir, tmp_path, settings, s3_server, monkeypatch):
    require_server("Redis", REDIS_HOST, REDIS_PORT)
    settings.KARBOR_FLOW_HEARTBEAT_INTERVAL = 3600
    settings.KARBOR_TEST_S3_KEY, settings.KARBOR_TEST_S3_SECRET = ACCESS_KEY, SECRET_KEY
    data, target = tmp_path / "www", tmp_path / "restore"
    data.mkdir()
    target.mkdir()
    fill_tree(data, files=6, size=32 * 1024)
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=DB)
    client.flushdb()
    s3 = boto3.client("s3", endpoint_url=s3_server.endpoint_url, aws_access_key_id=ACCESS_KEY,
                      aws_secret_access_key=SECRET_KEY, region_name=REGION)
    bucket = f"mixed-{owner.project_id[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3_entry = {"endpoint_url": s3_server.endpoint_url, "bucket": bucket, "access_key_env": "KARBOR_TEST_S3_KEY",
                "secret_key_env": "KARBOR_TEST_S3_SECRET", "projects": [owner.project_id]}
    appkit.write_provider(provider_dir, tmp_path / "bank", {
        FS: {"plugin": "filesystem", "options": {
            "sources": [{"name": "www", "path": str(data), "projects": [owner.project_id]}],
            "restore_targets": [{"path": str(target), "projects": [owner.project_id]}]}},
        REDIS: {"plugin": "redis", "options": {"sources": [
            {"name": "cache", "host": REDIS_HOST, "port": REDIS_PORT, "db": DB, "projects": [owner.project_id]}]}},
        S3: {"plugin": "s3_bucket", "options": {"sources": [{"name": "uploads", **s3_entry}],
                                                "restore_targets": [{"name": "copy", "prefix": "copy/", **s3_entry}]}},
    })
    sent: list[str] = []
    monkeypatch.setattr(protection_tasks.checkpoint_protect, "delay", lambda checkpoint_id: sent.append(checkpoint_id))
    monkeypatch.setattr(restore_run_task, "delay", lambda restore_id: sent.append(restore_id))
    yield {"data": data, "target": target, "redis": client, "s3": s3, "bucket": bucket, "sent": sent}
    client.flushdb()
    client.close()


def test_mixed_plan_protects_and_restores_through_the_api_in_one_checkpoint(owner, app, django_capture_on_commit_callbacks):
    client, s3, bucket = app["redis"], app["s3"], app["bucket"]
    client.set("greeting", "hello", ex=3600)
    client.hset("user:1", mapping={"name": "ada"})
    s3.put_object(Bucket=bucket, Key="avatar.png", Body=b"\x89PNG" * 1000, ContentType="image/png",
                  Metadata={"user": "1"}, Tagging="kind=avatar")

    types = set(owner.client.get(owner.url("protectables")).json()["protectable_type"])
    assert {FS, REDIS, S3} <= types
    instances = {}
    for resource_type in (FS, REDIS, S3):
        listed = owner.client.get(owner.url(f"protectables/{resource_type}/instances")).json()["instances"]
        (instance,) = listed
        instances[resource_type] = instance
    assert instances[FS]["id"] == directory_id(str(app["data"].resolve()))
    provider = owner.client.get(owner.url(f"providers/{appkit.PROVIDER_ID}")).json()["provider"]
    assert {FS, REDIS, S3} <= set(provider["extended_info_schema"]["restore_schema"])

    body = {"plan": {"name": "app", "provider_id": appkit.PROVIDER_ID, "parameters": {},
                     "resources": [{"id": i["id"], "type": t, "name": i["name"]} for t, i in instances.items()]}}
    response = owner.client.post(owner.url("plans"), body, format="json")
    assert response.status_code == 200, response.content
    plan_id = response.json()["plan"]["id"]
    with django_capture_on_commit_callbacks(execute=True):
        response = owner.client.post(owner.url(f"providers/{appkit.PROVIDER_ID}/checkpoints"),
                                     {"checkpoint": {"plan_id": plan_id}}, format="json")
    assert response.status_code == 200, response.content
    checkpoint_id = response.json()["checkpoint"]["id"]
    assert app["sent"] == [checkpoint_id]
    protect_flows.checkpoint_protect_run(checkpoint_id=checkpoint_id, worker="test-worker:1")
    shown = owner.client.get(owner.url(f"providers/{appkit.PROVIDER_ID}/checkpoints/{checkpoint_id}")).json()["checkpoint"]
    assert shown["status"] == "available", shown
    assert sorted(shown["resources_status"].values()) == ["available"] * 3

    client.flushdb()
    s3.delete_object(Bucket=bucket, Key="avatar.png")
    restore = {"restore": {
        "provider_id": appkit.PROVIDER_ID, "checkpoint_id": checkpoint_id, "restore_target": str(app["target"]),
        "restore_auth": None, "parameters": {S3: {"target": "copy"}},
    }}
    bad = {"restore": dict(restore["restore"], parameters={S3: {"target": "elsewhere"}})}
    response = owner.client.post(owner.url("restores"), bad, format="json")
    assert response.status_code == 400, response.content
    fault = response.json()["badRequest"]
    assert "'elsewhere' is not declared for this project" in fault["fields"][f"parameters.{S3}"][0]
    with django_capture_on_commit_callbacks(execute=True):
        response = owner.client.post(owner.url("restores"), restore, format="json")
    assert response.status_code == 200, response.content
    restore_id = response.json()["restore"]["id"]
    restore_flows.restore_run(restore_id=restore_id)
    shown = owner.client.get(owner.url(f"restores/{restore_id}")).json()["restore"]
    assert shown["status"] == "success", shown

    assert trees_equal(app["data"], app["target"])
    assert client.get("greeting") == b"hello" and 3500 < client.ttl("greeting") <= 3600
    assert client.hgetall("user:1") == {b"name": b"ada"}
    copied = s3.get_object(Bucket=bucket, Key="copy/avatar.png")
    assert copied["Body"].read() == b"\x89PNG" * 1000 and copied["ContentType"] == "image/png"
    assert copied["Metadata"] == {"user": "1"}
    assert s3.get_object_tagging(Bucket=bucket, Key="copy/avatar.png")["TagSet"] == [{"Key": "kind", "Value": "avatar"}]
