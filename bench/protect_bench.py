#!/usr/bin/env python3
"""Protect and restore through the whole service, against the bank alone, in one run.

    .venv/bin/python bench/protect_bench.py [--mib 512] [--rounds 5] [--workdir-parent /dev/shm]

Builds the dataset with ``../shared/bench/make_dataset.py`` and starts one service
(``manage.py serve``: gunicorn + Celery worker + beat, embedded broker, SQLite, encrypted local
banks) with the dataset declared as a ``Filesystem::Directory`` source. Then, for each round:

* **bank alone**: ``python -m protection.bank.cli protect`` / ``restore`` of the tree into a
  fresh bank (the same code the plugin calls, in its own process, encrypted) — timed as
  ``bench/bank_bench.py`` times it, the whole process, and also inside the call (the ``seconds``
  the CLI prints), which leaves out the interpreter's start;
* **via service**: a plan through the REST API on a provider whose bank is fresh for this
  round, ``POST …/checkpoints`` then polling until ``available``, and ``POST /restores`` to a
  declared restore target then polling until ``success``; the end time is the operation log's
  ``ended_at``, written by the worker.

Both sides of a round run back to back, the order swapped every round (so drift in the
machine's state falls on both equally), every protect starts warm (the tree read once first)
and every timed step starts after a sync and a short settle. While the bank alone runs, the service's
processes are stopped (SIGSTOP), so the bank alone has the machine to itself. Every restored
tree is compared with the dataset; on a disk nothing is deleted until the end (each round's
banks and restored trees take about 2 GiB). An untimed warm-up checkpoint and restore come
first (a running service has its worker's code loaded).

Restore figures swing from run to run on these machines (ext4 mounted with ``discard``:
creating files soon after a large delete waits), which is why there are rounds. The last line
is ``service overhead vs bank: protect=+X% restore=+Y%``: the median over rounds of each
round's overhead against the bank-alone process.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import contextmanager

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from bench.bank_bench import PASSPHRASE, make_dataset, run_measured, tree_digest, warm  # noqa: E402
from karbor_site.testing.live import live_service  # noqa: E402

DIRECTORY = "Filesystem::Directory"
# Polling is slow on purpose: a client asking 20 times a second costs the API process a fifth
# of a core, which a 2-core machine takes from the worker. The end of an operation is read
# from its operation log (``ended_at``, written by the worker on this same clock) instead.
POLL_SECONDS = float(os.environ.get("BENCH_POLL_SECONDS", "0.5"))
# Every timed step syncs and waits this long first, so none pays for the write-back of the step before.
SETTLE_SECONDS = 2.0

PROVIDER_YAML = """\
id: {id}
name: {name}
enabled: true
bank:
  type: local
  path: {bank}
  passphrase_env: KARBOR_BANK_PASSPHRASE
plugins:
  Filesystem::Directory:
    plugin: filesystem
    options:
      include_settings_sources: true
"""


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


@contextmanager
def service_stopped(service):
    """SIGSTOP every process of the service for the block, so the bank alone runs on a quiet machine."""
    pids = service.session_pids()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


class BankAlone:
    """The bank's own CLI, one fresh bank per round."""

    def __init__(self, workdir: str, workers: int) -> None:
        self.workdir = workdir
        self.workers = workers
        self.env = dict(os.environ, BANK_PASSPHRASE=PASSPHRASE, PYTHONPATH=REPO_ROOT)

    def _cli(self, bank: str, *args: str) -> tuple[float, dict]:
        command = [sys.executable, "-m", "protection.bank.cli", "--bank", bank, "--workers", str(self.workers), *args]
        wall, _cpu, _rss, stdout = run_measured(command, env=self.env)
        lines = stdout.strip().splitlines()
        return wall, (json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {})

    def protect(self, data: str, round_no: int) -> tuple[float, float, str]:
        bank = os.path.join(self.workdir, f"bank-alone-{round_no}")
        self._cli(bank, "init")
        checkpoint = str(uuid.uuid4())
        wall, out = self._cli(bank, "protect", data, "--id", checkpoint)
        return wall, out["seconds"], checkpoint

    def restore(self, checkpoint: str, dest: str, round_no: int) -> tuple[float, float]:
        wall, out = self._cli(os.path.join(self.workdir, f"bank-alone-{round_no}"), "restore", checkpoint, dest)
        return wall, out["seconds"]


class ViaService:
    """The REST API of one running service; one provider (so one fresh bank) per round."""

    def __init__(self, service) -> None:
        self.service = service
        instances = api(service, "GET", f"protectables/{DIRECTORY}/instances")["instances"]
        self.instances = {i["extra_info"]["path"]: i for i in instances}

    def _plan(self, provider_id: str, path: str) -> dict:
        instance = self.instances[os.path.realpath(path)]
        return api(self.service, "POST", "plans", {"plan": {
            "name": f"bench {uuid.uuid4().hex[:6]}", "provider_id": provider_id, "parameters": {},
            "resources": [{"id": instance["id"], "type": DIRECTORY, "name": instance["name"]}],
        }})["plan"]

    def protect(self, path: str, provider_id: str) -> tuple[float, str]:
        plan = self._plan(provider_id, path)
        started = time.time()
        checkpoint = api(self.service, "POST", f"providers/{provider_id}/checkpoints",
                         {"checkpoint": {"plan_id": plan["id"], "extra-info": {}}})["checkpoint"]
        done = wait_status(lambda: api(self.service, "GET", f"providers/{provider_id}/checkpoints/{checkpoint['id']}")
                           ["checkpoint"], {"available", "error"})
        if done["status"] != "available":
            raise RuntimeError(f"checkpoint ended {done['status']}: {done}")
        return ended_at(self.service, checkpoint_id=checkpoint["id"]) - started, checkpoint["id"]

    def restore(self, provider_id: str, checkpoint_id: str, dest: str) -> float:
        started = time.time()
        restore = api(self.service, "POST", "restores", {"restore": {
            "provider_id": provider_id, "checkpoint_id": checkpoint_id, "restore_target": dest,
            "parameters": {}, "restore_auth": None,
        }})["restore"]
        done = wait_status(lambda: api(self.service, "GET", f"restores/{restore['id']}")["restore"], {"success", "fail"})
        if done["status"] != "success":
            raise RuntimeError(f"restore ended {done['status']}: {done}")
        return ended_at(self.service, restore_id=restore["id"]) - started


def write_providers(config_dir: str, workdir: str, count: int) -> list[str]:
    os.makedirs(config_dir)
    ids = []
    for index in range(count):
        provider_id = str(uuid.uuid4())
        with open(os.path.join(config_dir, f"bench-{index}.yaml"), "w") as f:
            f.write(PROVIDER_YAML.format(id=provider_id, name=f"bench bank {index}",
                                         bank=os.path.join(workdir, f"bank-service-{index}")))
        ids.append(provider_id)
    return ids


def is_memory_backed(path: str) -> bool:
    """True when ``path`` lies on a tmpfs (the longest matching mount point of /proc/mounts)."""
    real, best, fstype = os.path.realpath(path), "", ""
    with open("/proc/mounts") as mounts:
        for line in mounts:
            _device, mount_point, kind = line.split()[:3]
            if (real == mount_point or real.startswith(mount_point.rstrip("/") + "/")) and len(mount_point) > len(best):
                best, fstype = mount_point, kind
    return fstype == "tmpfs"


def settle() -> None:
    # Flush the step before's dirty pages first: otherwise their write-back (half a GiB of
    # bank or restored tree) lands inside whichever step runs next.
    os.sync()
    time.sleep(SETTLE_SECONDS)


def percent(service: float, alone: float) -> float:
    return 100.0 * (service / alone - 1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset-script", default=os.path.join(REPO_ROOT, "..", "shared", "bench", "make_dataset.py"))
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of protect + restore on each side")
    parser.add_argument("--workdir-parent", default="/tmp",
                        help="where the dataset, banks and restores go (e.g. /dev/shm to take the disk out)")
    args = parser.parse_args()

    # The service's own data dir (SQLite) goes there too, so both sides share one file system.
    tempfile.tempdir = args.workdir_parent
    workdir = tempfile.mkdtemp(prefix="protect-bench-", dir=args.workdir_parent)
    try:
        data = os.path.join(workdir, "data")
        print(f"building {args.mib} MiB dataset in {data} ...", flush=True)
        make_dataset(os.path.abspath(args.dataset_script), data, args.mib)
        expected = tree_digest(data)
        warmup = os.path.join(workdir, "warmup")
        os.makedirs(warmup)
        with open(os.path.join(warmup, "hello.txt"), "w") as f:
            f.write("warm-up\n")
        targets = os.path.join(workdir, "targets")
        os.makedirs(targets)
        provider_ids = write_providers(os.path.join(workdir, "providers.d"), workdir, args.rounds + 1)
        extra_env = {
            "KARBOR_PROVIDER_CONFIG_DIR": os.path.join(workdir, "providers.d"),
            "KARBOR_FS_SOURCES": os.pathsep.join([data, warmup]),
            "KARBOR_FS_RESTORE_TARGETS": targets,
            "KARBOR_BANK_PASSPHRASE": PASSPHRASE,
            "KARBOR_BANK_WORKERS": str(args.workers),
            "KARBOR_WORKER_POOL": os.environ.get("KARBOR_WORKER_POOL", ""),  # empty: serve's default
        }
        memory_backed = is_memory_backed(workdir)
        alone = BankAlone(workdir, args.workers)
        rows = []
        with live_service(extra_env=extra_env, timeout=120) as service:
            via = ViaService(service)
            via.protect(warmup, provider_ids[0])
            # Once warm, a one-file tree shows what an operation costs whatever its size.
            settle()
            tiny_protect, tiny = via.protect(warmup, provider_ids[0])
            settle()
            tiny_restore = via.restore(provider_ids[0], tiny, os.path.join(targets, "warm-up"))
            print(f"  one-file tree through the service: protect {tiny_protect:.2f}s restore {tiny_restore:.2f}s",
                  flush=True)
            os.sync()
            time.sleep(5)  # let the dataset's write-back (and its discards) finish before anything is timed

            for round_no in range(args.rounds):
                provider_id = provider_ids[round_no + 1]
                alone_dest = os.path.join(workdir, f"restore-alone-{round_no}")
                service_dest = os.path.join(targets, f"restored-{round_no}")
                row = {}

                def alone_protect():
                    warm(data)
                    settle()
                    with service_stopped(service):
                        row["alone_protect"], row["alone_protect_call"], row["alone_checkpoint"] = alone.protect(data, round_no)

                def service_protect():
                    warm(data)
                    settle()
                    row["service_protect"], row["service_checkpoint"] = via.protect(data, provider_id)

                def alone_restore():
                    settle()
                    with service_stopped(service):
                        row["alone_restore"], row["alone_restore_call"] = alone.restore(row["alone_checkpoint"], alone_dest, round_no)

                def service_restore():
                    settle()
                    row["service_restore"] = via.restore(provider_id, row["service_checkpoint"], service_dest)

                service_first = round_no % 2 == 1
                steps = ([service_protect, alone_protect, service_restore, alone_restore] if service_first
                         else [alone_protect, service_protect, alone_restore, service_restore])
                for step in steps:
                    step()
                identical = tree_digest(alone_dest) == expected and tree_digest(service_dest) == expected
                rows.append(row)
                print(f"  round {round_no + 1} ({'service' if service_first else 'bank alone'} first): "
                      f"protect alone {row['alone_protect']:6.2f}s service {row['service_protect']:6.2f}s "
                      f"({percent(row['service_protect'], row['alone_protect']):+5.1f}%)   "
                      f"restore alone {row['alone_restore']:6.2f}s service {row['service_restore']:6.2f}s "
                      f"({percent(row['service_restore'], row['alone_restore']):+5.1f}%)   "
                      f"restored trees {'identical' if identical else 'DIFFER'}", flush=True)
                if not identical:
                    return 1
                # On a disk nothing is deleted before the end: a delete's discards slow what follows.
                # Memory is dearer than that on tmpfs, where a delete costs nothing later.
                if memory_backed:
                    shutil.rmtree(alone_dest)
                    shutil.rmtree(service_dest)

        def median(key: str) -> float:
            return statistics.median(row[key] for row in rows)

        print(f"\ndataset {args.mib} MiB under {args.workdir_parent}, bank workers={args.workers}, "
              f"cpus={os.cpu_count()}, {args.rounds} rounds, worker pool={extra_env['KARBOR_WORKER_POOL'] or 'default'}")
        print(f"{'seconds':32s}{'protect':>9s}{'restore':>9s}   (median, best)")
        for label, protect_key, restore_key in (
            ("bank alone, whole process", "alone_protect", "alone_restore"),
            ("bank alone, inside the call", "alone_protect_call", "alone_restore_call"),
            ("via service (API -> worker)", "service_protect", "service_restore"),
        ):
            print(f"{label:32s}{median(protect_key):9.2f}{median(restore_key):9.2f}   "
                  f"best {min(r[protect_key] for r in rows):.2f} / {min(r[restore_key] for r in rows):.2f}")
        per_round = {
            kind: [percent(r[f"service_{kind}"], r[f"alone_{kind}"]) for r in rows] for kind in ("protect", "restore")
        }
        strict = {
            kind: statistics.median(percent(r[f"service_{kind}"], r[f"alone_{kind}_call"]) for r in rows)
            for kind in ("protect", "restore")
        }
        print("per-round overhead: protect " + ", ".join(f"{p:+.1f}%" for p in per_round["protect"])
              + "; restore " + ", ".join(f"{p:+.1f}%" for p in per_round["restore"]))
        print(f"against the bank inside the call (no interpreter start): protect={strict['protect']:+.1f}% "
              f"restore={strict['restore']:+.1f}% (median)")
        print(f"service overhead vs bank: protect={statistics.median(per_round['protect']):+.1f}% "
              f"restore={statistics.median(per_round['restore']):+.1f}% (median of {args.rounds} rounds)")
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
