#!/usr/bin/env python3
"""Protect and restore through the whole service, against the bank alone, in one run.

    .venv/bin/python bench/protect_bench.py [--mib 512] [--repeat 1]

Builds the dataset with ``../shared/bench/make_dataset.py``, then:

* **bank alone**: ``python -m protection.bank.cli protect`` / ``restore`` of the tree (the
  same code the plugin calls, in its own process, encrypted);
* **service**: ``manage.py serve`` (gunicorn + Celery worker + beat, embedded broker, SQLite,
  encrypted local bank) with the dataset declared as a ``Filesystem::Directory`` source; after
  an untimed warm-up checkpoint and restore of a one-file directory (a running service has
  its bank and its worker's code loaded), a plan through the REST API, ``POST …/checkpoints`` then polling until ``available``, and
  ``POST /restores`` then polling until ``success`` (the end time is the operation log's ``ended_at``).

Every phase runs warm (the tree is read once first). Nothing is deleted until every phase
has run: on a file system mounted with ``discard`` (as these machines' ext4 is), creating
files right after a large delete waits for the discards, which made a restore 2-4x slower
in whichever phase came after a cleanup. The last line is
``service overhead vs bank: protect=+X% restore=+Y%``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from bench.bank_bench import PASSPHRASE, make_dataset, tree_digest, warm  # noqa: E402
from karbor_site.testing.live import live_service  # noqa: E402

DIRECTORY = "Filesystem::Directory"
# Polling is slow on purpose: a client asking 20 times a second costs the API process a fifth
# of a core, which a 2-core machine takes from the worker. The end of an operation is read
# from its operation log (``ended_at``, written by the worker on this same clock) instead.
POLL_SECONDS = float(os.environ.get("BENCH_POLL_SECONDS", "0.5"))
# Both sides wait this long between protect and restore, so neither restore pays for the
# write-back of what its protect just wrote.
SETTLE_SECONDS = 2.0


def api(service, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{service.endpoint}/{path}", method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"X-Auth-Token": service.token, "Content-Type": "application/json", "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        raw = response.read()
    return json.loads(raw) if raw else {}


def ended_at(service, **filters: str) -> float:
    """When the worker finished the operation (epoch seconds), from its operation log."""
    query = "&".join(f"{key}={value}" for key, value in filters.items())
    logs = api(service, "GET", f"operation_logs?{query}")["operation_logs"]
    stamp = max(log["ended_at"] for log in logs if log.get("ended_at"))
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.UTC).timestamp()


def wait_status(fetch, done: set[str], timeout: float = 1800) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        current = fetch()
        if current["status"] in done:
            return current
        if time.monotonic() > deadline:
            raise RuntimeError(f"still {current['status']} after {timeout}s")
        time.sleep(POLL_SECONDS)


def bank_alone(data: str, workdir: str, workers: int, run: int) -> tuple[float, float]:
    bank = os.path.join(workdir, f"bank-alone-{run}")
    env = dict(os.environ, BANK_PASSPHRASE=PASSPHRASE, PYTHONPATH=REPO_ROOT)
    base = [sys.executable, "-m", "protection.bank.cli", "--bank", bank, "--workers", str(workers)]
    subprocess.run(base + ["init"], env=env, check=True, stdout=subprocess.DEVNULL)
    checkpoint = str(uuid.uuid4())
    warm(data)
    started = time.monotonic()
    subprocess.run(base + ["protect", data, "--id", checkpoint], env=env, check=True, stdout=subprocess.DEVNULL)
    protect = time.monotonic() - started
    dest = os.path.join(workdir, f"restore-alone-{run}")
    time.sleep(SETTLE_SECONDS)
    started = time.monotonic()
    subprocess.run(base + ["restore", checkpoint, dest], env=env, check=True, stdout=subprocess.DEVNULL)
    restore = time.monotonic() - started
    return protect, restore


def through_service(data: str, workdir: str, workers: int, run: int) -> tuple[float, float, bool]:
    targets = os.path.join(workdir, f"targets-{run}")
    os.makedirs(targets, exist_ok=True)
    warmup = os.path.join(workdir, f"warmup-{run}")
    os.makedirs(warmup, exist_ok=True)
    with open(os.path.join(warmup, "hello.txt"), "w") as f:
        f.write("warm-up\n")
    extra_env = {
        "KARBOR_FS_SOURCES": os.pathsep.join([data, warmup]),
        "KARBOR_FS_RESTORE_TARGETS": targets,
        "KARBOR_BANK_PASSPHRASE": PASSPHRASE,
        "KARBOR_BANK_WORKERS": str(workers),
        "KARBOR_WORKER_POOL": os.environ.get("KARBOR_WORKER_POOL", ""),  # empty: serve's default
    }
    with live_service(extra_env=extra_env, timeout=120) as service:
        provider = next(p for p in api(service, "GET", "providers")["providers"]
                        if DIRECTORY in p["extended_info_schema"]["options_schema"])
        instances = api(service, "GET", f"protectables/{DIRECTORY}/instances")["instances"]
        instance = next(i for i in instances if i["extra_info"]["path"] == os.path.realpath(data))
        # A running service has its bank created and its worker's code loaded: a tiny checkpoint
        # and restore (untimed) first, so the figures are the steady state, not the first call.
        tiny = next(i for i in instances if i["extra_info"]["path"] == os.path.realpath(warmup))
        tiny_plan = api(service, "POST", "plans", {"plan": {
            "name": "warm-up", "provider_id": provider["id"], "parameters": {},
            "resources": [{"id": tiny["id"], "type": DIRECTORY, "name": tiny["name"]}],
        }})["plan"]
        tiny_cp = api(service, "POST", f"providers/{provider['id']}/checkpoints",
                      {"checkpoint": {"plan_id": tiny_plan["id"]}})["checkpoint"]
        wait_status(lambda: api(service, "GET", f"providers/{provider['id']}/checkpoints/{tiny_cp['id']}")
                    ["checkpoint"], {"available", "error"})
        tiny_restore = api(service, "POST", "restores", {"restore": {
            "provider_id": provider["id"], "checkpoint_id": tiny_cp["id"],
            "restore_target": os.path.join(targets, "warm-up"), "parameters": {}, "restore_auth": None,
        }})["restore"]
        wait_status(lambda: api(service, "GET", f"restores/{tiny_restore['id']}")["restore"], {"success", "fail"})
        plan = api(service, "POST", "plans", {"plan": {
            "name": "bench", "provider_id": provider["id"], "parameters": {},
            "resources": [{"id": instance["id"], "type": DIRECTORY, "name": instance["name"]}],
        }})["plan"]
        warm(data)
        started = time.time()
        checkpoint = api(service, "POST", f"providers/{provider['id']}/checkpoints",
                         {"checkpoint": {"plan_id": plan["id"], "extra-info": {}}})["checkpoint"]
        done = wait_status(lambda: api(service, "GET", f"providers/{provider['id']}/checkpoints/{checkpoint['id']}")
                           ["checkpoint"], {"available", "error"})
        protect = ended_at(service, checkpoint_id=checkpoint["id"]) - started
        if done["status"] != "available":
            raise RuntimeError(f"checkpoint ended {done['status']}: {done}")
        dest = os.path.join(targets, "restored")
        time.sleep(SETTLE_SECONDS)  # the protect task's tail (writer close) is not the restore's cost
        started = time.time()
        restore = api(service, "POST", "restores", {"restore": {
            "provider_id": provider["id"], "checkpoint_id": checkpoint["id"], "restore_target": dest,
            "parameters": {}, "restore_auth": None,
        }})["restore"]
        done = wait_status(lambda: api(service, "GET", f"restores/{restore['id']}")["restore"], {"success", "fail"})
        restore_seconds = ended_at(service, restore_id=restore["id"]) - started
        if done["status"] != "success":
            raise RuntimeError(f"restore ended {done['status']}: {done}")
        identical = tree_digest(dest) == tree_digest(data)
    return protect, restore_seconds, identical


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset-script", default=os.path.join(REPO_ROOT, "..", "shared", "bench", "make_dataset.py"))
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--workdir-parent", default="/tmp",
                        help="where the dataset, banks and restores go (e.g. /dev/shm to take the disk out)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each; the best is reported (runs after the first follow the service's "
                             "own cleanup, so the first run is the fairest)")
    args = parser.parse_args()

    # The service's own data dir (SQLite, bank) goes there too, so both sides share one file system.
    tempfile.tempdir = args.workdir_parent
    workdir = tempfile.mkdtemp(prefix="protect-bench-", dir=args.workdir_parent)
    try:
        data = os.path.join(workdir, "data")
        print(f"building {args.mib} MiB dataset in {data} ...", flush=True)
        make_dataset(os.path.abspath(args.dataset_script), data, args.mib)
        os.sync()
        time.sleep(5)  # let earlier deletes' discards finish before anything is timed
        alone, service = [], []
        for run in range(args.repeat):
            alone.append(bank_alone(data, workdir, args.workers, run))
            print(f"  run {run + 1}: bank alone   protect {alone[-1][0]:6.2f}s  restore {alone[-1][1]:6.2f}s", flush=True)
            protect, restore, identical = through_service(data, workdir, args.workers, run)
            service.append((protect, restore))
            print(f"  run {run + 1}: via service  protect {protect:6.2f}s  restore {restore:6.2f}s  "
                  f"(restored tree {'identical' if identical else 'DIFFERS'})", flush=True)
            if not identical:
                return 1
        best_alone = (min(a[0] for a in alone), min(a[1] for a in alone))
        best_service = (min(s[0] for s in service), min(s[1] for s in service))
        print(f"\ndataset {args.mib} MiB under {args.workdir_parent}, workers={args.workers}, cpus={os.cpu_count()}, "
              f"best of {args.repeat}")
        print(f"{'':14s}{'protect s':>10s}{'restore s':>10s}")
        print(f"{'bank alone':14s}{best_alone[0]:10.2f}{best_alone[1]:10.2f}")
        print(f"{'via service':14s}{best_service[0]:10.2f}{best_service[1]:10.2f}")
        over = [100.0 * (s / a - 1.0) for s, a in zip(best_service, best_alone)]
        print(f"service overhead vs bank: protect={over[0]:+.1f}% restore={over[1]:+.1f}%")
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
