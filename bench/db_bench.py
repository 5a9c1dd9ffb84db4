#!/usr/bin/env python3
"""Protect and restore of a pgbench database: the PostgreSQL plugin + bank vs pg_dump / pg_restore alone.

    .venv/bin/python bench/db_bench.py [--scale 40] [--rounds 3] [--hex-filler] [--host 127.0.0.1 --port 5432 --user postgres]

Creates ``pgbench -i -s SCALE`` (scale 40: 4 M accounts, about 600 MB) in a fresh database (pgbench's
``filler`` columns are blanks, which compress to almost nothing; ``--hex-filler`` fills them with hex
digits so that compression has real work to do), then
runs ROUNDS interleaved rounds (the order of the two sides alternates) of:

* plugin protect: ``PostgreSQLDatabasePlugin.protect`` into a fresh encrypted local bank, in
  this process, exactly as the protect flow calls it (``pg_dump -Fc -Z0`` streamed into the bank
  writer, row counts in the dump's snapshot), then the commit of the manifest;
* plugin second checkpoint of the unchanged database into the same bank (the figure to watch
  is the fraction of new bytes it stores; goal < 5 %);
* plugin restore: ``restore`` into a new database (bank → ``pg_restore --single-transaction`` →
  rename), as the restore flow calls it;
* alone: ``pg_dump -Fc`` (default compression) into a file, and ``createdb`` + ``pg_restore``
  from that file.

Why the plugin dumps with ``-Z0``: ``pg_dump -Fc`` compresses every table's data with zlib, so
the archive of an unchanged database differs in header bytes only, but any changed row shifts
every compressed byte after it, and the bank's content-defined chunks no longer match —
dedup dies. Uncompressed output lets the bank find unchanged chunks; the bank compresses each
new chunk with zstd itself (faster than zlib, so protect also gets cheaper in CPU).

Prints the medians (wall and CPU seconds incl. child processes) and plugin/alone ratios. The
machine may be shared: figures are noisy, compare ratios from one run, not across runs.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
PASSPHRASE = "bench-passphrase-not-secret"
PROJECT = "bench"


def cpu_seconds() -> float:
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


class Timed:
    def __enter__(self) -> "Timed":
        self.wall, self.cpu = time.monotonic(), cpu_seconds()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.monotonic() - self.wall, cpu_seconds() - self.cpu


def pg_env(args) -> dict[str, str]:
    return dict(os.environ, PGHOST=args.host, PGPORT=str(args.port), PGUSER=args.user)


def run(cmd: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.decode()[-2000:]}")


def psql(args, database: str, statement: str) -> str:
    result = subprocess.run(["psql", "-X", "-qAt", "-d", database, "-c", statement], env=pg_env(args),
                            capture_output=True, text=True, check=True)
    return result.stdout.strip()


def drop_database(args, name: str) -> None:
    run(["dropdb", "--if-exists", "--force", name], pg_env(args))


def setup_django(workdir: str) -> None:
    os.environ.setdefault("KARBOR_DATA_DIR", os.path.join(workdir, "var"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "karbor_site.settings")
    import django

    django.setup()


def sync(args=None) -> None:
    """Settle before a timed step: PostgreSQL's dirty buffers (a CHECKPOINT) and the kernel's, so the
    previous step's write-back (a restore writes 600 MB) does not land inside the next timed one."""
    if args is not None:
        psql(args, "postgres", "CHECKPOINT")
    os.sync()
    time.sleep(1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=int, default=40)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5432)
    p.add_argument("--user", default="postgres", help="a role that may create databases (trust or PGPASSWORD)")
    p.add_argument("--workdir", default=None, help="banks and dump files; default: a new directory under /tmp")
    p.add_argument("--workers", type=int, default=0, help="bank threads (0: the bank's default)")
    p.add_argument("--hex-filler", action="store_true",
                   help="replace pgbench's blank filler by hex digits (less compressible: more work for zlib and zstd)")
    args = p.parse_args()

    workdir = args.workdir or tempfile.mkdtemp(prefix="db-bench-", dir="/tmp")
    os.makedirs(workdir, exist_ok=True)
    setup_django(workdir)
    from protection.bank import Bank, LocalBackend
    from protection.banks import resource_prefix
    from providers.plugins.base import ProtectContext, RestoreContext
    from providers.plugins.postgresql import PostgreSQLDatabasePlugin

    env = pg_env(args)
    database = f"karbor_bench_{uuid.uuid4().hex[:8]}"
    created = [database]
    server = {"host": args.host, "port": args.port, "user": args.user, "projects": [PROJECT]}
    plugin = PostgreSQLDatabasePlugin({"sources": [{"name": "bench", "databases": [database], **server}]})
    instance = plugin.list_instances(project_id=PROJECT)[0]
    prefix = resource_prefix(plugin.resource_type, instance.id)
    results: dict[str, list[tuple[float, float]]] = {}
    fractions: list[float] = []
    sizes: dict[str, int] = {}

    def record(label: str, timed: Timed) -> None:
        results.setdefault(label, []).append((timed.wall, timed.cpu))
        print(f"  {label:24s} {timed.wall:8.2f} s wall {timed.cpu:8.2f} s cpu", flush=True)

    try:
        print(f"pgbench -i -s {args.scale} into {database} ...", flush=True)
        run(["createdb", database], env)
        run(["pgbench", "-i", "-q", "-s", str(args.scale), database], env)
        if args.hex_filler:
            psql(args, database, "UPDATE pgbench_accounts SET filler = md5(aid::text) || md5((aid * 7)::text)")
            run(["vacuumdb", "--full", database], env)
        run(["vacuumdb", "--analyze", database], env)
        sizes["database"] = int(psql(args, database, "SELECT pg_database_size(current_database())"))
        expected_accounts = 100_000 * args.scale

        def plugin_side(round_no: int) -> None:
            bank_dir = os.path.join(workdir, f"bank-{round_no}")
            shutil.rmtree(bank_dir, ignore_errors=True)
            kwargs = {"workers": args.workers} if args.workers else {}
            bank = Bank.init_or_open(LocalBackend(bank_dir), passphrase=PASSPHRASE, **kwargs)
            first = str(uuid.uuid4())
            sync(args)
            with Timed() as timed:
                with bank.writer(manifest_id=first) as writer:
                    saved = plugin.protect(ProtectContext(project_id=PROJECT, resource=instance, parameters={},
                                                          writer=writer, prefix=prefix))
                    writer.commit(meta={"bench": "first"})
            record("plugin protect", timed)
            sizes["dump -Z0 stream"] = saved["dump_bytes"]
            sizes["bank stored (first)"] = bank.stored_bytes()
            second = str(uuid.uuid4())
            with Timed() as timed:
                with bank.writer(manifest_id=second, parent_id=first) as writer:
                    again = plugin.protect(ProtectContext(project_id=PROJECT, resource=instance, parameters={},
                                                          writer=writer, prefix=prefix))
                    writer.commit(meta={"bench": "second"})
            record("plugin 2nd checkpoint", timed)
            fractions.append(again["new_bytes"] / again["dump_bytes"])
            print(f"  {'':24s} second checkpoint stored {again['new_bytes'] / 2**20:.1f} MiB new of "
                  f"{again['dump_bytes'] / 2**20:.1f} MiB ({100 * fractions[-1]:.2f} %)", flush=True)
            target = f"{database}_r{round_no}p"
            created.append(target)
            sync(args)
            with Timed() as timed:
                plugin.restore(RestoreContext(project_id=PROJECT, resource=instance, saved_info=saved,
                                              parameters={"database": target}, bank=bank, checkpoint_id=first,
                                              prefix=prefix))
            record("plugin restore", timed)
            assert int(psql(args, target, "SELECT count(*) FROM pgbench_accounts")) == expected_accounts
            drop_database(args, target)
            shutil.rmtree(bank_dir, ignore_errors=True)

        def alone_side(round_no: int) -> None:
            dump_file = os.path.join(workdir, "alone.dump")
            sync(args)
            with Timed() as timed:
                run(["pg_dump", "-Fc", "-f", dump_file, database], env)
                os.sync()  # the file must be on disk like the bank's packs (the bank fsyncs every pack)
            record("pg_dump -Fc", timed)
            sizes["pg_dump -Fc file"] = os.path.getsize(dump_file)
            target = f"{database}_r{round_no}a"
            created.append(target)
            sync(args)
            with Timed() as timed:
                run(["createdb", target], env)
                run(["pg_restore", "--single-transaction", "--exit-on-error", "-d", target, dump_file], env)
            record("pg_restore", timed)
            assert int(psql(args, target, "SELECT count(*) FROM pgbench_accounts")) == expected_accounts
            drop_database(args, target)
            os.unlink(dump_file)

        for round_no in range(1, args.rounds + 1):
            print(f"round {round_no}/{args.rounds}", flush=True)
            sides = [plugin_side, alone_side] if round_no % 2 else [alone_side, plugin_side]
            for side in sides:
                side(round_no)

        def median(label: str, column: int) -> float:
            return statistics.median(value[column] for value in results[label])

        print(f"\npgbench scale {args.scale}{' (hex filler)' if args.hex_filler else ''}: database {sizes['database'] / 2**20:.0f} MiB; "
              f"pg_dump -Fc file {sizes['pg_dump -Fc file'] / 2**20:.1f} MiB; -Z0 stream "
              f"{sizes['dump -Z0 stream'] / 2**20:.1f} MiB; bank after the first checkpoint "
              f"{sizes['bank stored (first)'] / 2**20:.1f} MiB (zstd + encrypted); {args.rounds} rounds, "
              f"medians; cpus={os.cpu_count()} (shared machine: noisy)")
        header = f"{'operation':10s} {'plugin+bank s':>14s} {'alone s':>9s} {'ratio':>6s} {'plugin cpu s':>13s} {'alone cpu s':>12s}"
        print(header)
        print("-" * len(header))
        for name, ours, theirs in (("protect", "plugin protect", "pg_dump -Fc"), ("restore", "plugin restore", "pg_restore")):
            wall_ours, wall_theirs = median(ours, 0), median(theirs, 0)
            print(f"{name:10s} {wall_ours:14.2f} {wall_theirs:9.2f} {wall_ours / wall_theirs:6.2f} "
                  f"{median(ours, 1):13.2f} {median(theirs, 1):12.2f}")
        print(f"second checkpoint of the unchanged database: {median('plugin 2nd checkpoint', 0):.2f} s, "
              f"new bytes {100 * statistics.median(fractions):.2f} % of the dump (goal < 5 %)")
        print(f"ratio vs pg_dump/pg_restore: protect={median('plugin protect', 0) / median('pg_dump -Fc', 0):.2f} "
              f"restore={median('plugin restore', 0) / median('pg_restore', 0):.2f} (goal: protect <= 1.15)")
        return 0
    finally:
        for name in created:
            drop_database(args, name)
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
