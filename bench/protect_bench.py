#!/usr/bin/env python3
"""Protect and restore through the whole service, against the bank alone, in one run.

    .venv/bin/python bench/protect_bench.py [--mib 512] [--repeat 1]

Builds the dataset with ``../shared/bench/make_dataset.py``, then:

* **bank alone**: ``python -m protection.bank.cli protect`` / ``restore`` of the tree (the
  same code the plugin calls, in its own process, encrypted);
* **service**: ``manage.py serve`` (gunicorn + Celery worker + beat, embedded broker, SQLite,
  encrypted local bank) with the dataset declared as a ``Filesystem::Directory`` source; a
  plan through the REST API, ``POST …/checkpoints`` then polling until ``available``, and
  ``POST /restores`` then polling until ``success`` (polls every 50 ms).

Every phase runs warm (the tree is read once first). The last line is
``service overhead vs bank: protect=+X% restore=+Y%``.
"""
from __future__ import annotations

import argparse
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


def api(service, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{service.endpoint}/{path}", method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"X-Auth-Token": service.token, "Content-Type": "application/json", "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        raw = response.read()
    return json.loads(raw) if raw else {}


def wait_status(fetch, done: set[str], timeout: float = 1800) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        current = fetch()
        if current["status"] in done:
            return current
        if time.monotonic() > deadline:
            raise RuntimeError(f"still {current['status']} after {timeout}s")
        time.sleep(0.05)


def bank_alone(data: str, workdir: str, workers: int) -> tuple[float, float]:
    bank = os.path.join(workdir, "bank-alone")
    env = dict(os.environ, BANK_PASSPHRASE=PASSPHRASE, PYTHONPATH=REPO_ROOT)
    base = [sys.executable, "-m", "protection.bank.cli", "--bank", bank, "--workers", str(workers)]
    subprocess.run(base + ["init"], env=env, check=True, stdout=subprocess.DEVNULL)
    checkpoint = str(uuid.uuid4())
    warm(data)
    started = time.monotonic()
    subprocess.run(base + ["protect", data, "--id", checkpoint], env=env, check=True, stdout=subprocess.DEVNULL)
    protect = time.monotonic() - started
    dest = os.path.join(workdir, "restore-alone")
    started = time.monotonic()
    subprocess.run(base + ["restore", checkpoint, dest], env=env, check=True, stdout=subprocess.DEVNULL)
    restore = time.monotonic() - started
    shutil.rmtree(dest, ignore_errors=True)
    shutil.rmtree(bank, ignore_errors=True)
    return protect, restore


def through_service(data: str, workdir: str, workers: int) -> tuple[float, float, bool]:
    targets = os.path.join(workdir, "targets")
    os.makedirs(targets, exist_ok=True)
    extra_env = {
        "KARBOR_FS_SOURCES": data,
        "KARBOR_FS_RESTORE_TARGETS": targets,
        "KARBOR_BANK_PASSPHRASE": PASSPHRASE,
        "KARBOR_BANK_WORKERS": str(workers),
    }
    with live_service(extra_env=extra_env, timeout=120) as service:
        provider = next(p for p in api(service, "GET", "providers")["providers"]
                        if DIRECTORY in p["extended_info_schema"]["options_schema"])
        instance = next(i for i in api(service, "GET", f"protectables/{DIRECTORY}/instances")["instances"]
                        if i["extra_info"]["path"] == os.path.realpath(data))
        plan = api(service, "POST", "plans", {"plan": {
            "name": "bench", "provider_id": provider["id"], "parameters": {},
            "resources": [{"id": instance["id"], "type": DIRECTORY, "name": instance["name"]}],
        }})["plan"]
        warm(data)
        started = time.monotonic()
        checkpoint = api(service, "POST", f"providers/{provider['id']}/checkpoints",
                         {"checkpoint": {"plan_id": plan["id"], "extra-info": {}}})["checkpoint"]
        done = wait_status(lambda: api(service, "GET", f"providers/{provider['id']}/checkpoints/{checkpoint['id']}")
                           ["checkpoint"], {"available", "error"})
        protect = time.monotonic() - started
        if done["status"] != "available":
            raise RuntimeError(f"checkpoint ended {done['status']}: {done}")
        dest = os.path.join(targets, "restored")
        started = time.monotonic()
        restore = api(service, "POST", "restores", {"restore": {
            "provider_id": provider["id"], "checkpoint_id": checkpoint["id"], "restore_target": dest,
            "parameters": {}, "restore_auth": None,
        }})["restore"]
        done = wait_status(lambda: api(service, "GET", f"restores/{restore['id']}")["restore"], {"success", "fail"})
        restore_seconds = time.monotonic() - started
        if done["status"] != "success":
            raise RuntimeError(f"restore ended {done['status']}: {done}")
        identical = tree_digest(dest) == tree_digest(data)
    return protect, restore_seconds, identical


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset-script", default=os.path.join(REPO_ROOT, "..", "shared", "bench", "make_dataset.py"))
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the best is reported")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="protect-bench-", dir="/tmp")
    try:
        data = os.path.join(workdir, "data")
        print(f"building {args.mib} MiB dataset in {data} ...", flush=True)
        make_dataset(os.path.abspath(args.dataset_script), data, args.mib)
        alone, service = [], []
        for run in range(args.repeat):
            alone.append(bank_alone(data, workdir, args.workers))
            print(f"  run {run + 1}: bank alone   protect {alone[-1][0]:6.2f}s  restore {alone[-1][1]:6.2f}s", flush=True)
            protect, restore, identical = through_service(data, workdir, args.workers)
            service.append((protect, restore))
            print(f"  run {run + 1}: via service  protect {protect:6.2f}s  restore {restore:6.2f}s  "
                  f"(restored tree {'identical' if identical else 'DIFFERS'})", flush=True)
            if not identical:
                return 1
        best_alone = (min(a[0] for a in alone), min(a[1] for a in alone))
        best_service = (min(s[0] for s in service), min(s[1] for s in service))
        print(f"\ndataset {args.mib} MiB, workers={args.workers}, cpus={os.cpu_count()}, best of {args.repeat}")
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
