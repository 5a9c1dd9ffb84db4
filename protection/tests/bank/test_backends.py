"""Backend.delete_many: every key gone, missing keys fine, and S3 in batches of 1000 keys per request."""
from __future__ import annotations

import pytest

from protection.bank.backends import S3_DELETE_BATCH
from protection.tests.bank.conftest import make_s3_backend, new_bank
from protection.tests.bank.helpers import pseudo_random


def count_s3_requests(backend) -> dict[str, int]:
    """Count the S3 operations the backend's client sends (boto3's own event hooks)."""
    counts: dict[str, int] = {}

    def seen(model, **_kwargs):
        counts[model.name] = counts.get(model.name, 0) + 1

    backend._client.meta.events.register("before-call.s3", seen)
    return counts


def test_delete_many_removes_every_key_and_ignores_missing_ones(backend):
    keys = [f"packs/{n:02x}/{n:064x}" for n in range(30)]
    for key in keys:
        backend.put(key, b"x")
    backend.put("index/keep", b"y")
    assert backend.delete_many(keys + ["packs/ff/missing"]) == 31
    assert [info.key for info in backend.list("")] == ["index/keep"]
    assert backend.delete_many([]) == 0


@pytest.mark.server
def test_s3_delete_many_sends_one_request_per_thousand_keys(s3_server):
    backend = make_s3_backend(s3_server)
    keys = [f"packs/{n % 256:02x}/{n:064x}" for n in range(2 * S3_DELETE_BATCH + 500)]
    client = backend._client
    for key in keys:
        client.put_object(Bucket=backend.bucket, Key=backend._key(key), Body=b"")
    counts = count_s3_requests(backend)
    assert backend.delete_many(iter(keys)) == len(keys)
    assert counts == {"DeleteObjects": 3}
    assert list(backend.list("packs/")) == []


@pytest.mark.server
def test_s3_gc_deletes_packs_in_batches(s3_server):
    backend = make_s3_backend(s3_server)
    bank = new_bank(backend, pack_size=64 * 1024, index_every_packs=4)
    for n in range(3):
        with bank.writer(f"drop-{n}") as writer:
            writer.add_stream("own", [pseudo_random(400_000, f"own-{n}")])
            writer.commit()
        bank.delete_manifest(f"drop-{n}")
    counts = count_s3_requests(backend)
    report = bank.gc(grace_seconds=0, clock_skew=0)
    assert report.deleted_packs >= 10
    # Packs and index objects go in DeleteObjects batches; the one DeleteObject is GC releasing its own lock.
    assert counts.get("DeleteObjects", 0) <= 3 and counts.get("DeleteObject", 0) == 1
    assert list(backend.list("packs/")) == []
