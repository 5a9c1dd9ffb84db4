#!/usr/bin/env python3
"""Protect, verify and restore of a Redis database and an S3 bucket through their plugins, into a local bank.

    .venv/bin/python bench/app_data_bench.py [--keys 200000] [--objects 300] [--redis-db 7 --restore-db 6]

Redis (127.0.0.1:6379): fills ``--redis-db`` with ``--keys`` keys (90 % strings of 50-300 bytes,
the rest hashes, lists, sets and sorted sets; a tenth with TTLs), then times a checkpoint
(SCAN + DUMP streamed into an encrypted local bank), a second checkpoint of the unchanged
database, a verify and a restore into ``--restore-db``; compares key counts, and against
``redis-cli --rdb`` (the server's own whole-instance RDB over the replication protocol) as
the baseline of reading the same data out. Both databases are flushed at the end.

S3 (a moto server process on a free port): ``--objects`` objects of 16-512 KiB plus one of
24 MiB, with metadata and tags; times a checkpoint, a second checkpoint of the unchanged bucket
(what it downloads and stores), a verify and a restore into another bucket.

The plugins are called as the flows call them (ProtectContext / RestoreContext / VerifyContext),
without Celery or the database, so the figures are the plugins and the bank.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "karbor_site.settings")

import django  # noqa: E402

django.setup()

import boto3  # noqa: E402
import redis  # noqa: E402

from protection.bank import Bank, LocalBackend  # noqa: E402
from protection.banks import resource_prefix  # noqa: E402
from protection.tests.bank.s3server import ACCESS_KEY, REGION, SECRET_KEY, start_moto_server  # noqa: E402
from providers.plugins.base import ProtectContext, RestoreContext, VerifyContext  # noqa: E402
from providers.plugins.redis_db import RedisDatabasePlugin  # noqa: E402
from providers.plugins.s3_bucket import S3BucketPlugin  # noqa: E402

PROJECT = "bench"
MIB = 1024 * 1024


def timed(label: str, fn):
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    print(f"{label:<44} {seconds:8.2f} s", flush=True)
    return result, seconds


def protect(bank: Bank, plugin, instance, parent: str | None):
    checkpoint = str(uuid.uuid4())
    with bank.writer(checkpoint, parent_id=parent) as writer:
        saved = plugin.protect(ProtectContext(project_id=PROJECT, resource=instance, parameters={}, writer=writer,
                                              prefix=resource_prefix(instance.type, instance.id)))
        writer.commit(meta={})
    return checkpoint, saved


def restore(bank: Bank, plugin, instance, checkpoint: str, saved: dict, parameters: dict):
    return plugin.restore(RestoreContext(project_id=PROJECT, resource=instance, saved_info=saved, parameters=parameters,
                                         bank=bank, checkpoint_id=checkpoint,
                                         prefix=resource_prefix(instance.type, instance.id)))


def verify(bank: Bank, plugin, instance, checkpoint: str, saved: dict):
    return plugin.verify(VerifyContext(project_id=PROJECT, resource=instance, saved_info=saved, bank=bank,
                                       checkpoint_id=checkpoint, prefix=resource_prefix(instance.type, instance.id)))


def new_bank(path: str) -> Bank:
    return Bank.init(LocalBackend(path), passphrase="bench passphrase", scrypt_n=2**12, workers=2)


def redis_bench(args, workdir: str) -> None:
    client = redis.Redis(port=6379, db=args.redis_db)
    target = redis.Redis(port=6379, db=args.restore_db)
    for db in (client, target):
        if db.dbsize():
            sys.exit(f"database {db.connection_pool.connection_kwargs['db']} is not empty; pick empty ones")
    rng = random.Random(1)
    try:
        pipe = client.pipeline(transaction=False)
        for index in range(args.keys):
            kind = index % 20
            key = f"bench:{index}"
            if kind < 18:
                pipe.set(key, rng.randbytes(rng.randint(50, 300)))
            elif index % 40 == 18:
                pipe.hset(key, mapping={f"f{n}": rng.randbytes(40) for n in range(10)})
            elif index % 40 == 38:
                pipe.rpush(key, *[rng.randbytes(30) for _ in range(10)])
            elif index % 40 == 19:
                pipe.sadd(key, *[f"m{n}" for n in range(20)])
            else:
                pipe.zadd(key, {f"z{n}": n for n in range(20)})
            if index % 10 == 0:
                pipe.expire(key, 86_400)
            if index % 5000 == 4999:
                pipe.execute()
        pipe.execute()
        used = int(client.info("memory")["used_memory"])
        print(f"Redis: {args.keys} keys in db {args.redis_db} (server used_memory {used / MIB:.1f} MiB)")
        rdb = os.path.join(workdir, "dump.rdb")
        _, baseline = timed("redis-cli --rdb (whole instance, baseline)", lambda: subprocess.run(
            ["redis-cli", "-p", "6379", "--rdb", rdb], check=True, capture_output=True))
        print(f"{'  RDB size':<44} {os.path.getsize(rdb) / MIB:8.1f} MiB")
        bank = new_bank(os.path.join(workdir, "redis-bank"))
        plugin = RedisDatabasePlugin({
            "sources": [{"name": "bench", "host": "127.0.0.1", "port": 6379, "db": args.redis_db, "projects": ["*"]}],
            "restore_targets": [{"name": "copy", "host": "127.0.0.1", "port": 6379, "db": args.restore_db,
                                 "projects": ["*"]}],
        })
        (instance,) = plugin.list_instances(project_id=PROJECT, parameters={})
        (first, saved), seconds = timed("protect (SCAN + DUMP into the bank)", lambda: protect(bank, plugin, instance, None))
        print(f"{'  keys, stream MiB, new MiB, vs baseline':<44} {saved['keys']} {saved['bytes'] / MIB:.1f} "
              f"{saved['new_bytes'] / MIB:.1f} {seconds / baseline:.2f}x  ({saved['keys'] / seconds:,.0f} keys/s)")
        stored = bank.stored_bytes()
        (second, saved2), _ = timed("second protect, unchanged", lambda: protect(bank, plugin, instance, first))
        print(f"{'  new bytes of the second checkpoint':<44} {saved2['new_bytes']} "
              f"({100 * (bank.stored_bytes() - stored) / stored:.2f} % of the first)")
        timed("verify", lambda: verify(bank, plugin, instance, second, saved2))
        report, _ = timed("restore into another db (pipelined RESTORE)",
                          lambda: restore(bank, plugin, instance, second, saved2, {"target": "copy"}))
        assert target.dbsize() == args.keys == report["keys"], (target.dbsize(), report)
        print(f"{'  keys restored':<44} {report['keys']}")
    finally:
        client.flushdb()
        target.flushdb()


def s3_bench(args, workdir: str) -> None:
    server = start_moto_server()
    try:
        s3 = boto3.client("s3", endpoint_url=server.endpoint_url, aws_access_key_id=ACCESS_KEY,
                          aws_secret_access_key=SECRET_KEY, region_name=REGION)
        for bucket in ("bench-src", "bench-copy"):
            s3.create_bucket(Bucket=bucket)
        rng = random.Random(2)
        total = 0
        for index in range(args.objects):
            body = rng.randbytes(rng.randint(16, 512) * 1024)
            total += len(body)
            s3.put_object(Bucket="bench-src", Key=f"data/{index % 10}/obj-{index}", Body=body,
                          ContentType="application/octet-stream", Metadata={"n": str(index)}, Tagging="bench=1")
        big = os.urandom(24 * MIB)
        s3.put_object(Bucket="bench-src", Key="data/big.bin", Body=big)
        total += len(big)
        print(f"S3: {args.objects + 1} objects, {total / MIB:.1f} MiB (moto server)")
        os.environ["BENCH_S3_KEY"], os.environ["BENCH_S3_SECRET"] = ACCESS_KEY, SECRET_KEY
        entry = {"endpoint_url": server.endpoint_url, "region": REGION, "access_key_env": "BENCH_S3_KEY",
                 "secret_key_env": "BENCH_S3_SECRET", "projects": ["*"]}
        plugin = S3BucketPlugin({"sources": [{"name": "src", "bucket": "bench-src", **entry}],
                                 "restore_targets": [{"name": "copy", "bucket": "bench-copy", **entry}]})
        (instance,) = plugin.list_instances(project_id=PROJECT, parameters={})
        bank = new_bank(os.path.join(workdir, "s3-bank"))
        (first, saved), seconds = timed("protect", lambda: protect(bank, plugin, instance, None))
        print(f"{'  MiB/s':<44} {total / MIB / seconds:8.1f}")
        stored = bank.stored_bytes()
        (second, saved2), _ = timed("second protect, unchanged bucket", lambda: protect(bank, plugin, instance, first))
        print(f"{'  downloaded bytes, new bytes, reused objects':<44} {saved2['downloaded_bytes']} {saved2['new_bytes']} "
              f"{saved2['objects_reused']}/{saved2['objects']}  (bank grew {bank.stored_bytes() - stored} bytes, "
              f"{100 * (bank.stored_bytes() - stored) / stored:.3f} %)")
        timed("verify (SHA-256 of every object)", lambda: verify(bank, plugin, instance, second, saved2))
        report, seconds = timed("restore into another bucket",
                                lambda: restore(bank, plugin, instance, second, saved2, {"target": "copy"}))
        print(f"{'  objects, MiB/s':<44} {report['objects']} {total / MIB / seconds:.1f}")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--objects", type=int, default=300)
    parser.add_argument("--redis-db", type=int, default=7)
    parser.add_argument("--restore-db", type=int, default=6)
    parser.add_argument("--only", choices=["redis", "s3"])
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="app-data-bench-")
    try:
        if args.only in (None, "redis"):
            redis_bench(args, workdir)
        if args.only in (None, "s3"):
            s3_bench(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
