"""``S3::Bucket`` against a real S3 server process (moto in server mode on a free port)."""
from __future__ import annotations

import hashlib
import os
import time

import boto3
import pytest
from django.core.exceptions import ImproperlyConfigured

from karbor_site.errors import InvalidInput
from karbor_site.testing.servers import free_port
from protection.tests.bank.s3server import ACCESS_KEY, REGION, SECRET_KEY
from providers.plugins.s3_bucket import S3BucketPlugin
from providers.tests import appkit
from providers.testing import OWNER_PROJECT, STRANGER_PROJECT

# The shared fixture: a moto S3 server process for the module.
s3_server = appkit.s3_server

pytestmark = [pytest.mark.server, pytest.mark.django_db]

S3 = "S3::Bucket"
BIG = 9 * 1024 * 1024 + 12345  # above the 8 MiB part size: a multipart upload on restore


@pytest.fixture
def s3(s3_server):
    return boto3.client("s3", endpoint_url=s3_server.endpoint_url, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, region_name=REGION)


def _entry(name: str, server, bucket: str, projects, **extra):
    entry = {"name": name, "endpoint_url": server.endpoint_url, "bucket": bucket, "region": REGION,
             "access_key_env": "KARBOR_TEST_S3_KEY", "secret_key_env": "KARBOR_TEST_S3_SECRET", "timeout": 3, **extra}
    if projects is not None:
        entry["projects"] = projects
    return entry


@pytest.fixture
def buckets(s3, request):
    suffix = hashlib.sha1(request.node.name.encode()).hexdigest()[:10]
    names = {"app": f"app-{suffix}", "copy": f"copy-{suffix}", "theirs": f"theirs-{suffix}"}
    for name in names.values():
        s3.create_bucket(Bucket=name)
    return names


@pytest.fixture
def provider(provider_dir, tmp_path, settings, s3_server, buckets):
    settings.KARBOR_TEST_S3_KEY = ACCESS_KEY
    settings.KARBOR_TEST_S3_SECRET = SECRET_KEY
    appkit.write_provider(provider_dir, tmp_path / "bank", {
        S3: {"plugin": "s3_bucket", "options": {
            "sources": [
                _entry("app", s3_server, buckets["app"], [OWNER_PROJECT], prefix="app/"),
                _entry("theirs", s3_server, buckets["theirs"], [STRANGER_PROJECT]),
                _entry("nobody", s3_server, buckets["theirs"], None, prefix="x/"),
            ],
            "restore_targets": [_entry("copy", s3_server, buckets["copy"], [OWNER_PROJECT], prefix="restored/")],
        }},
    })
    return appkit.plugin(S3)


def instance_id(plugin, name: str, project_id: str = OWNER_PROJECT) -> str:
    (found,) = [i for i in plugin.list_instances(project_id=project_id, parameters={}) if i.name == name]
    return found.id


def fill(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="app/readme.txt", Body=b"hello\n", ContentType="text/plain",
                  Metadata={"owner": "alice", "build": "42"}, Tagging="team=web&tier=gold")
    s3.put_object(Bucket=bucket, Key="app/nested/deep/data.json", Body=b'{"a": 1}', ContentType="application/json",
                  CacheControl="max-age=60", ContentDisposition="attachment")
    s3.put_object(Bucket=bucket, Key="app/nested/empty", Body=b"")
    s3.put_object(Bucket=bucket, Key="app/ünï cødé.txt", Body="✓".encode(), Tagging="k=v")
    s3.put_object(Bucket=bucket, Key="app/big.bin", Body=os.urandom(BIG), ContentType="application/octet-stream",
                  Metadata={"kind": "big"})
    s3.put_object(Bucket=bucket, Key="outside/not-copied.txt", Body=b"outside the source prefix")


def objects(s3, bucket: str, prefix: str) -> dict[str, tuple]:
    """relative key → (sha256, content type, metadata, tags, cache-control, content-disposition)."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for listed in page.get("Contents", []):
            key = listed["Key"]
            got = s3.get_object(Bucket=bucket, Key=key)
            tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}
            found[key[len(prefix):]] = (
                hashlib.sha256(got["Body"].read()).hexdigest(), got.get("ContentType"), got.get("Metadata"), tags,
                got.get("CacheControl"), got.get("ContentDisposition"),
            )
    return found


def test_protect_change_restore_in_place_brings_back_every_object_with_metadata_and_tags(provider, s3, buckets):
    bucket = buckets["app"]
    fill(s3, bucket)
    before = objects(s3, bucket, "app/")
    assert len(before) == 5
    checkpoint = appkit.protect(appkit.make_plan(S3, [instance_id(provider, "app")]))
    assert checkpoint.status == "available", checkpoint.status_reason
    (saved,) = checkpoint.saved_info.values()
    assert saved["objects"] == 5 and saved["bytes"] == BIG + 6 + 8 + 3 and saved["downloaded_bytes"] == saved["bytes"]

    s3.put_object(Bucket=bucket, Key="app/readme.txt", Body=b"changed", ContentType="text/html", Metadata={"x": "y"})
    s3.delete_object(Bucket=bucket, Key="app/nested/deep/data.json")
    s3.delete_object(Bucket=bucket, Key="app/big.bin")

    refused = appkit.restore(checkpoint)
    assert refused.status == "fail"
    assert "confirm_overwrite" in next(iter(refused.resources_reason.values()))
    assert not objects(s3, bucket, "app/nested/deep/")  # nothing was written

    done = appkit.restore(checkpoint, {S3: {"confirm_overwrite": True}})
    assert done.status == "success", done.resources_reason
    assert objects(s3, bucket, "app/") == before

    verification = appkit.verify(checkpoint)
    assert verification.status == "success", verification.resources_reason


def test_restore_into_a_declared_bucket_under_a_key_prefix(provider, s3, buckets):
    fill(s3, buckets["app"])
    before = objects(s3, buckets["app"], "app/")
    checkpoint = appkit.protect(appkit.make_plan(S3, [instance_id(provider, "app")]))
    assert checkpoint.status == "available", checkpoint.status_reason
    done = appkit.restore(checkpoint, {S3: {"target": "copy", "key_prefix": "run-1/"}})
    assert done.status == "success", done.resources_reason
    assert objects(s3, buckets["copy"], "restored/run-1/") == before
    # Again into the same place: the objects exist now, so only an explicit confirmation overwrites them.
    assert appkit.restore(checkpoint, {S3: {"target": "copy", "key_prefix": "run-1/"}}).status == "fail"


def test_second_checkpoint_of_an_unchanged_bucket_downloads_nothing_and_stores_almost_nothing(provider, s3, buckets):
    fill(s3, buckets["app"])
    plan = appkit.make_plan(S3, [instance_id(provider, "app")])
    first = appkit.protect(plan)
    assert first.status == "available", first.status_reason
    stored_after_first = appkit.bank().stored_bytes()
    second = appkit.protect(plan)
    assert second.status == "available", second.status_reason
    (saved,) = second.saved_info.values()
    assert saved["objects"] == saved["objects_reused"] == 5 and saved["downloaded_bytes"] == 0
    assert saved["new_bytes"] < 16 * 1024  # the item list only
    assert appkit.bank().stored_bytes() - stored_after_first < 64 * 1024
    assert appkit.verify(second).status == "success"

    s3.put_object(Bucket=buckets["app"], Key="app/readme.txt", Body=b"edited\n", Tagging="team=ops")
    third = appkit.protect(plan)
    (saved,) = third.saved_info.values()
    assert saved["objects_reused"] == 4 and saved["downloaded_bytes"] == 7
    dest = appkit.restore(third, {S3: {"target": "copy"}})
    assert dest.status == "success", dest.resources_reason
    restored = objects(s3, buckets["copy"], "restored/")
    assert restored["readme.txt"][0] == hashlib.sha256(b"edited\n").hexdigest() and restored["readme.txt"][3] == {"team": "ops"}
    assert len(restored["big.bin"][0]) == 64


def test_sources_are_deny_by_default_and_other_projects_cannot_plan_them(provider):
    assert {i.name for i in provider.list_instances(project_id=OWNER_PROJECT, parameters={})} == {"app"}
    assert {i.name for i in provider.list_instances(project_id=STRANGER_PROJECT, parameters={})} == {"theirs"}
    with pytest.raises(InvalidInput):
        appkit.make_plan(S3, [instance_id(provider, "theirs", STRANGER_PROJECT)])


def test_an_undeclared_restore_target_or_a_bad_key_prefix_is_a_400_naming_the_parameter(provider, s3, buckets):
    s3.put_object(Bucket=buckets["app"], Key="app/a", Body=b"a")
    checkpoint = appkit.protect(appkit.make_plan(S3, [instance_id(provider, "app")]))
    assert checkpoint.status == "available", checkpoint.status_reason
    with pytest.raises(InvalidInput) as caught:
        appkit.restore(checkpoint, {S3: {"target": "theirs"}})
    (reason,) = caught.value.fields[f"parameters.{S3}"]
    assert "'theirs' is not declared for this project" in reason and "copy" in reason
    with pytest.raises(InvalidInput) as caught:
        appkit.restore(checkpoint, {S3: {"key_prefix": "../escape/"}})
    assert "key_prefix" in caught.value.fields[f"parameters.{S3}"][0]
    assert "Contents" not in s3.list_objects_v2(Bucket=buckets["theirs"])


def test_unreachable_endpoint_missing_bucket_and_missing_credentials_fail_with_the_reason(provider_dir, tmp_path, settings, s3_server):
    settings.KARBOR_TEST_S3_KEY = ACCESS_KEY
    settings.KARBOR_TEST_S3_SECRET = SECRET_KEY
    down = {"name": "down", "endpoint_url": f"http://127.0.0.1:{free_port()}", "bucket": "nope", "timeout": 1,
            "access_key_env": "KARBOR_TEST_S3_KEY", "secret_key_env": "KARBOR_TEST_S3_SECRET", "projects": ["*"]}
    missing = _entry("missing", s3_server, "no-such-bucket-here", ["*"])
    nokey = _entry("nokey", s3_server, "whatever", ["*"], access_key_env="KARBOR_TEST_NO_SUCH_KEY_VARIABLE")
    appkit.write_provider(provider_dir, tmp_path / "bank", {
        S3: {"plugin": "s3_bucket", "options": {"sources": [down, missing, nokey]}}})
    plugin = appkit.plugin(S3)
    expected = {"down": "cannot reach the endpoint", "missing": "does not exist", "nokey": "KARBOR_TEST_NO_SUCH_KEY_VARIABLE"}
    for name, words in expected.items():
        started = time.monotonic()
        checkpoint = appkit.protect(appkit.make_plan(S3, [instance_id(plugin, name)]))
        assert time.monotonic() - started < 15
        assert checkpoint.status == "error"
        assert words in next(iter(checkpoint.resources_reason.values())), name


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"sources": [{"name": "a", "bucket": "b"}]}, "options.sources.0.bucket"),
        ({"sources": [{"name": "a", "bucket": "bucket", "access_key_env": "K"}]}, "options.sources.0"),
        ({"sources": [{"name": "a", "bucket": "bucket", "endpoint_url": "ftp://x"}]}, "options.sources.0.endpoint_url"),
        ({"restore_targets": [{"name": "t", "bucket": "bbb"}, {"name": "t", "bucket": "ccc"}]}, "options.restore_targets.1.name"),
    ],
)
def test_bad_operator_options_name_the_option(options, named):
    with pytest.raises(ImproperlyConfigured) as caught:
        S3BucketPlugin(options)
    assert named in str(caught.value)


def test_an_object_deleted_between_listing_and_read_is_left_out_not_a_failure(provider, s3, buckets, monkeypatch):
    from providers.plugins import s3_bucket

    s3.put_object(Bucket=buckets["app"], Key="app/stays", Body=b"here")
    listing = s3_bucket._list_objects

    def listing_with_a_deleted_object(client, bucket, prefix):
        yield {"Key": "app/deleted-meanwhile", "ETag": '"0"', "Size": 3}  # listed, then gone: the server answers 404
        yield from listing(client, bucket, prefix)

    monkeypatch.setattr(s3_bucket, "_list_objects", listing_with_a_deleted_object)
    checkpoint = appkit.protect(appkit.make_plan(S3, [instance_id(provider, "app")]))
    assert checkpoint.status == "available", checkpoint.status_reason
    (saved,) = checkpoint.saved_info.values()
    assert saved["objects"] == 1 and saved["vanished"] == 1
