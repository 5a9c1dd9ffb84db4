#!/usr/bin/env python3
"""Benchmark the bank against restic and borg: full protect, incremental, restore, size.

    .venv/bin/python bench/bank_bench.py [--mib 512] [--rounds 5] [--workdir DIR] [--rss-scaling]

Each tool runs in its own subprocess; wall time, CPU (user+sys of the child from
os.wait4) and peak RSS (ru_maxrss) are measured per run. All tools use encryption and
zstd-class compression (restic ``--compression auto``, borg ``zstd,3`` repokey). The page
cache cannot be dropped reliably, so the tree is read before each tool's run and every tool runs warm
(borg evicts the tree it backed up; without this, the tool after it read cold data).

The machine is shared and noisy, so ``--rounds N`` repeats everything N times: each round
starts from fresh repositories and a fresh copy of the dataset, runs each phase for every
tool back to back (the tool going first rotates), checks every restore against the source,
and the table shows medians. The last line is
``ratio vs restic: full=X incr=Y restore=Z size=W rss=V`` (ours / restic's; with rounds, the
median of the per-round ratios, each round's tools having run side by side).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Dict, List, Optional, Tuple

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSPHRASE = "bench-passphrase-not-secret"


def run_measured(cmd: List[str], cwd: Optional[str] = None, env: Optional[dict] = None) -> Tuple[float, float, float, str]:
    """Run ``cmd``; return (wall s, cpu s, peak RSS MiB, stdout). Raises on failure."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # communicate() would reap the child before we can read its rusage; read pipes in threads instead.
    import threading

    out: Dict[str, bytes] = {}

    def reader(name, stream):
        out[name] = stream.read()

    threads = [threading.Thread(target=reader, args=(n, s)) for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    for t in threads:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out.get('err', b'').decode()[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0, out.get("out", b"").decode()


def tree_size(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def warm(path: str) -> None:
    """Read the tree twice: Linux activates a cached page on its second read, and that costs about
    as much system time as the read itself (~1 s for 512 MiB here), which would otherwise fall on
    whichever tool reads the tree first."""
    buffer = bytearray(1 << 22)  # one buffer: no allocation per read, no memory freed just before a tool starts
    for _ in range(2):
        for root, _, files in os.walk(path):
            for name in files:
                full = os.path.join(root, name)
                if os.path.isfile(full) and not os.path.islink(full):
                    with open(full, "rb", buffering=0) as f:
                        while f.readinto(buffer):
                            pass


def tree_digest(path: str) -> Dict[str, str]:
    # One reused buffer: this process's resident size at each spawn becomes the floor of the
    # child's peak RSS as Linux reports it (exec keeps the forked copy's high-water mark), so
    # reading 1 MiB blocks into new objects here had raised every tool's figure to ~93 MiB.
    found = {}
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    for root, dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, path)
            if os.path.islink(full):
                found[rel] = "link:" + os.readlink(full)
            else:
                h = hashlib.blake2b()
                with open(full, "rb", buffering=0) as f:
                    while True:
                        n = f.readinto(buffer)
                        if not n:
                            break
                        h.update(view[:n])
                found[rel] = h.hexdigest()
    return found


def ensure_tools() -> List[str]:
    missing = [t for t in ("restic", "borg") if not shutil.which(t)]
    if missing and hasattr(os, "geteuid") and os.geteuid() == 0:
        print(f"installing {' '.join(missing)} from Debian packages ...", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "restic", "borgbackup"], check=False,
                       stdout=subprocess.DEVNULL)
    return [t for t in ("restic", "borg") if shutil.which(t)]


class Tool:
    name = ""

    def __init__(self, workdir: str) -> None:
        self.repo = os.path.join(workdir, f"repo-{self.name}")
        self.env = dict(os.environ)

    def init(self) -> None: ...
    def full(self, data: str) -> List[str]: ...
    def incr(self, data: str) -> List[str]: ...
    def restore(self, dest: str) -> Tuple[List[str], Optional[str]]: ...

    def size(self) -> int:
        return tree_size(self.repo)


class OurBank(Tool):
    name = "bank"

    def __init__(self, workdir: str, workers: int) -> None:
        super().__init__(workdir)
        self.env.update(BANK_PASSPHRASE=PASSPHRASE, PYTHONPATH=REPO_ROOT)
        self.base = [sys.executable, "-m", "protection.bank.cli", "--bank", self.repo, "--workers", str(workers)]
        self.full_id = str(uuid.uuid4())
        self.incr_id = str(uuid.uuid4())

    def init(self) -> None:
        subprocess.run(self.base + ["init"], env=self.env, check=True, stdout=subprocess.DEVNULL)

    def full(self, data: str) -> List[str]:
        return self.base + ["protect", data, "--id", self.full_id]

    def incr(self, data: str) -> List[str]:
        return self.base + ["protect", data, "--id", self.incr_id, "--parent", self.full_id]

    def restore(self, dest: str) -> Tuple[List[str], Optional[str]]:
        return self.base + ["restore", self.incr_id, dest], None


class Restic(Tool):
    name = "restic"

    def __init__(self, workdir: str) -> None:
        super().__init__(workdir)
        self.env.update(RESTIC_PASSWORD=PASSPHRASE, RESTIC_REPOSITORY=self.repo,
                        RESTIC_CACHE_DIR=os.path.join(workdir, "restic-cache"))

    def init(self) -> None:
        subprocess.run(["restic", "init", "--repository-version", "2"], env=self.env, check=True,
                       stdout=subprocess.DEVNULL)

    def full(self, data: str) -> List[str]:
        return ["restic", "backup", "--compression", "auto", "--host", "bench", "-q", "."]

    incr = full

    def restore(self, dest: str) -> Tuple[List[str], Optional[str]]:
        return ["restic", "restore", "latest", "--target", dest, "-q"], None


class Borg(Tool):
    name = "borg"

    def __init__(self, workdir: str) -> None:
        super().__init__(workdir)
        self.env.update(BORG_PASSPHRASE=PASSPHRASE, BORG_BASE_DIR=os.path.join(workdir, "borg-home"),
                        BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes", BORG_RELOCATED_REPO_ACCESS_IS_OK="yes")

    def init(self) -> None:
        subprocess.run(["borg", "init", "--encryption", "repokey", self.repo], env=self.env, check=True,
                       stdout=subprocess.DEVNULL)

    def full(self, data: str) -> List[str]:
        return ["borg", "create", "--compression", "zstd,3", f"{self.repo}::full", "."]

    def incr(self, data: str) -> List[str]:
        return ["borg", "create", "--compression", "zstd,3", f"{self.repo}::incr", "."]

    def restore(self, dest: str) -> Tuple[List[str], Optional[str]]:
        return ["borg", "extract", f"{self.repo}::incr"], dest


def make_dataset(script: str, dest: str, mib: int) -> None:
    subprocess.run([sys.executable, script, dest, "--mib", str(mib)], check=True)


def rss_scaling(script: str, workdir: str, workers: int) -> None:
    print("\npeak RSS of a full protect / restore by dataset size (bank):")
    for mib in (256, 1024):
        data = os.path.join(workdir, f"rss-data-{mib}")
        make_dataset(script, data, mib)
        tool = OurBank(os.path.join(workdir, f"rss-{mib}"), workers)
        os.makedirs(os.path.dirname(tool.repo), exist_ok=True)
        tool.init()
        wall, cpu, rss, _ = run_measured(tool.full(data), env=tool.env)
        dest = os.path.join(workdir, f"rss-restore-{mib}")
        tool.incr_id = tool.full_id
        rwall, rcpu, rrss, _ = run_measured(tool.restore(dest)[0], env=tool.env)
        print(f"  {mib:5d} MiB: protect peak RSS {rss:6.1f} MiB ({wall:.1f}s), restore peak RSS {rrss:6.1f} MiB "
              f"({rwall:.1f}s)", flush=True)


PHASES = ("full", "incr", "restore")
Result = Tuple[float, float, float, int]  # wall s, cpu s, peak RSS MiB, repo bytes


def make_tools(names: List[str], workdir: str, workers: int) -> List[Tool]:
    kinds = {"bank": lambda: OurBank(workdir, workers), "restic": lambda: Restic(workdir), "borg": lambda: Borg(workdir)}
    return [kinds[name]() for name in names]


def run_round(number: int, tools: List[Tool], base: str, workdir: str, script: str) -> Dict[Tuple[str, str], Result]:
    """One round in its own directory: new repositories, a new copy of the dataset, each phase tool after tool.

    Nothing is deleted until every round is over: on ext4 without a journal (this machine's
    disk), creating files shortly after deleting many costs a scan over every recently
    deleted inode, which would slow whichever tool runs after a deletion.
    """
    os.makedirs(workdir)
    data = os.path.join(workdir, "data")
    # cp -a keeps mtimes, so every round's incremental sees the same unchanged files.
    subprocess.run(["cp", "-a", base, data], check=True)
    for tool in tools:
        tool.init()
    results: Dict[Tuple[str, str], Result] = {}

    def phase(label: str, build) -> None:
        for tool in tools:
            # Before each tool, not once per phase: ``borg create`` drops the tree it read from the
            # page cache (posix_fadvise DONTNEED), which left the tool after it reading cold data.
            warm(data)
            cmd, cwd = build(tool)
            # Write back what the previous step left dirty, so its flush does not land on this tool's fsyncs.
            os.sync()
            wall, cpu, rss, _ = run_measured(cmd, cwd=cwd or data, env=tool.env)
            size = tool.size()
            results[(tool.name, label)] = (wall, cpu, rss, size)
            print(f"  round {number} {tool.name:7s} {label:8s} {wall:7.2f}s wall {cpu:7.2f}s cpu {rss:7.1f} MiB RSS "
                  f"{size / 2**20:8.1f} MiB repo", flush=True)

    phase("full", lambda t: (t.full(data), None))
    subprocess.run([sys.executable, script, data, "--mutate", "5"], check=True)
    phase("incr", lambda t: (t.incr(data), None))

    def restore_cmd(tool: Tool):
        dest = os.path.join(workdir, f"restore-{tool.name}")
        os.makedirs(dest)
        cmd, cwd = tool.restore(dest)
        return cmd, cwd or dest

    phase("restore", restore_cmd)
    expected = tree_digest(data)
    for tool in tools:
        got = tree_digest(os.path.join(workdir, f"restore-{tool.name}"))
        if got != expected:
            raise RuntimeError(f"round {number}: {tool.name}'s restore differs from the source tree")
    print(f"  round {number}: every restore matches the source tree", flush=True)
    return results


def ratios(results: Dict[Tuple[str, str], Result]) -> Dict[str, float]:
    """Ours / restic's: wall time per phase, repository size after the incremental, peak RSS of the restore."""
    def of(label: str, col: int) -> float:
        return results[("bank", label)][col] / results[("restic", label)][col]

    return {"full": of("full", 0), "incr": of("incr", 0), "restore": of("restore", 0), "size": of("incr", 3),
            "rss": max(results[("bank", p)][2] for p in PHASES) / max(results[("restic", p)][2] for p in PHASES)}


def format_ratios(r: Dict[str, float]) -> str:
    return " ".join(f"{k}={v:.2f}" for k, v in r.items())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset-script", default=os.path.join(REPO_ROOT, "..", "shared", "bench", "make_dataset.py"))
    p.add_argument("--mib", type=int, default=512)
    p.add_argument("--rounds", type=int, default=1,
                   help="rounds on fresh repositories, tool order rotated each round; medians are reported")
    p.add_argument("--workdir", default=None, help="default: a new directory under /tmp")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--tools", default="bank,restic,borg")
    p.add_argument("--rss-scaling", action="store_true", help="also print peak RSS for 256 vs 1024 MiB")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args()
    if args.rounds < 1:
        p.error("--rounds must be at least 1")

    script = os.path.abspath(args.dataset_script)
    workdir = args.workdir or tempfile.mkdtemp(prefix="bank-bench-", dir="/tmp")
    os.makedirs(workdir, exist_ok=True)
    available = ensure_tools()
    # Like an installed package (pip compiles on install): the bank CLI loads bytecode, not source,
    # also where PYTHONDONTWRITEBYTECODE is set (Python still reads .pyc files then).
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(REPO_ROOT, "protection", "bank")],
                   check=True)
    names = []
    for name in (t.strip() for t in args.tools.split(",") if t.strip()):
        if name == "bank" or name in available:
            names.append(name)
        else:
            print(f"skipping {name}: not installed")

    base = os.path.join(workdir, "data-base")
    try:
        print(f"building {args.mib} MiB dataset in {base} ...", flush=True)
        shutil.rmtree(base, ignore_errors=True)
        make_dataset(script, base, args.mib)
        data_bytes = tree_size(base)
        rounds: List[Dict[Tuple[str, str], Result]] = []
        for number in range(1, args.rounds + 1):
            # Rotating who goes first spreads the cost of a cold cache or a busy neighbour over every tool.
            shift = (number - 1) % len(names)
            round_dir = os.path.join(workdir, f"round-{number}")
            tools = make_tools(names[shift:] + names[:shift], round_dir, args.workers)
            rounds.append(run_round(number, tools, base, round_dir, script))
            if len(rounds) > 1 and ("restic", "full") in rounds[-1] and ("bank", "full") in rounds[-1]:
                print(f"  round {number} ratio vs restic: {format_ratios(ratios(rounds[-1]))}", flush=True)

        print(f"\ndataset: {data_bytes / 2**20:.1f} MiB, workers={args.workers}, cpus={os.cpu_count()}, "
              f"rounds={len(rounds)} (medians)")
        header = (f"{'tool':8s} {'phase':8s} {'wall s':>8s} {'min-max wall':>13s} {'cpu s':>8s} "
                  f"{'peak RSS MiB':>13s} {'repo MiB':>9s}")
        print(header)
        print("-" * len(header))
        for name in names:
            for label in PHASES:
                runs = [r[(name, label)] for r in rounds]
                walls = [x[0] for x in runs]
                print(f"{name:8s} {label:8s} {statistics.median(walls):8.2f} "
                      f"{min(walls):6.2f}-{max(walls):<6.2f} {statistics.median(x[1] for x in runs):8.2f} "
                      f"{statistics.median(x[2] for x in runs):13.1f} "
                      f"{statistics.median(x[3] for x in runs) / 2**20:9.1f}")
        if args.rss_scaling:
            rss_scaling(script, workdir, args.workers)
        if ("bank", "full") in rounds[0] and ("restic", "full") in rounds[0]:
            per_round = [ratios(r) for r in rounds]
            if len(rounds) > 1:
                print("per-round ratios vs restic:")
                for number, r in enumerate(per_round, 1):
                    print(f"  round {number}: {format_ratios(r)}")
            median = {k: statistics.median(r[k] for r in per_round) for k in per_round[0]}
            print(f"ratio vs restic{' (median of the rounds)' if len(rounds) > 1 else ''}: {format_ratios(median)}")
        return 0
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
