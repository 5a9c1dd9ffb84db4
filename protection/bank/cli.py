"""Command line for the bank (used by the benchmark and by operators).

    python -m protection.bank.cli --bank DIR [--workers N] init|protect|restore|copy|list|check|gc|passwd ...

The passphrase comes from ``$BANK_PASSPHRASE`` (unset or empty: unencrypted bank);
``passwd`` reads the new one from ``$BANK_NEW_PASSPHRASE``; ``copy ID --to-bank DIR`` (or
``--to-s3-bucket`` ...) opens the destination with ``$BANK_TO_PASSPHRASE`` (unset: the
source's), creating it when the location is empty. S3: ``--s3-bucket`` with
``--s3-endpoint``/``--s3-prefix``/``--s3-region`` and ``$AWS_ACCESS_KEY_ID``/``$AWS_SECRET_ACCESS_KEY``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from typing import List, Optional

from .backends import Backend, LocalBackend, S3Backend
from .bank import DEFAULT_COMPRESSION_LEVEL, Bank
from .errors import BankError


def _backend(args: argparse.Namespace, to: str = "") -> Backend:
    """The bank named by ``--bank``/``--s3-*`` (or, with ``to="to_"``, by ``--to-bank``/``--to-s3-*``)."""
    option = to.replace("_", "-")
    bucket = getattr(args, f"{to}s3_bucket")
    if bucket:
        return S3Backend(
            bucket=bucket, prefix=getattr(args, f"{to}s3_prefix") or "", endpoint_url=getattr(args, f"{to}s3_endpoint"),
            access_key=os.environ.get("AWS_ACCESS_KEY_ID"), secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
            region=getattr(args, f"{to}s3_region"),
        )
    directory = getattr(args, f"{to}bank")
    if not directory:
        raise BankError(f"--{option}bank DIR or --{option}s3-bucket is required")
    return LocalBackend(directory)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point; returns the process exit code."""
    p = argparse.ArgumentParser(prog="python -m protection.bank.cli")
    p.add_argument("--bank", help="local bank directory")
    p.add_argument("--s3-bucket")
    p.add_argument("--s3-prefix")
    p.add_argument("--s3-endpoint")
    p.add_argument("--s3-region")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    sub = p.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init")
    init.add_argument("--compression-level", type=int, default=DEFAULT_COMPRESSION_LEVEL)
    prot = sub.add_parser("protect")
    prot.add_argument("source")
    prot.add_argument("--id", default=None, help="checkpoint id (default: new UUID)")
    prot.add_argument("--parent", default=None, help="parent checkpoint id for an incremental protect")
    prot.add_argument("--prefix", default="")
    rest = sub.add_parser("restore")
    rest.add_argument("id")
    rest.add_argument("dest")
    rest.add_argument("--prefix", default="")
    cop = sub.add_parser("copy", help="copy a checkpoint into another bank, sending only what it lacks")
    cop.add_argument("id")
    cop.add_argument("--to-bank", help="destination bank directory")
    cop.add_argument("--to-s3-bucket")
    cop.add_argument("--to-s3-prefix")
    cop.add_argument("--to-s3-endpoint")
    cop.add_argument("--to-s3-region")
    cop.add_argument("--reference", default=None, help="an earlier copy to reuse chunk ids from (default: found)")
    sub.add_parser("list")
    chk = sub.add_parser("check")
    chk.add_argument("--read-data", action="store_true")
    gcp = sub.add_parser("gc")
    gcp.add_argument("--grace-seconds", type=float, default=24 * 3600)
    dele = sub.add_parser("delete")
    dele.add_argument("id")
    sub.add_parser("passwd")
    args = p.parse_args(argv)

    passphrase = os.environ.get("BANK_PASSPHRASE") or None
    try:
        backend = _backend(args)
        if args.command == "init":
            Bank.init(backend, passphrase, compression_level=args.compression_level)
            print(f"initialised bank at {backend.describe()}")
            return 0
        bank = Bank.open(backend, passphrase, workers=args.workers)
        if args.command == "protect":
            started = time.monotonic()
            with bank.writer(args.id or str(uuid.uuid4()), parent_id=args.parent) as w:
                w.add_tree(args.source, prefix=args.prefix)
                manifest = w.commit(meta={"source": os.path.abspath(args.source)})
            s = manifest.stats
            print(json.dumps({"id": manifest.id, "files": s.files, "bytes": s.bytes, "bytes_read": s.bytes_read,
                              "new_bytes": s.new_bytes, "new_stored_bytes": s.new_stored_bytes,
                              "seconds": round(time.monotonic() - started, 3), "warnings": s.warnings[:10]}))
        elif args.command == "restore":
            started = time.monotonic()
            # The operator's path may lead through symlinks; the restore itself follows none.
            report = bank.restore_tree(args.id, os.path.realpath(args.dest), prefix=args.prefix)
            print(json.dumps({"files": report.files, "dirs": report.dirs, "bytes": report.bytes,
                              "seconds": round(time.monotonic() - started, 3)}))
        elif args.command == "copy":
            to_passphrase = os.environ.get("BANK_TO_PASSPHRASE", passphrase or "") or None
            target = Bank.init_or_open(_backend(args, to="to_"), to_passphrase, workers=args.workers)
            report = bank.copy_manifest_to(target, args.id, reference_id=args.reference)
            fields = {k: v for k, v in report.__dict__.items() if k != "manifest"}
            print(json.dumps(dict(fields, id=report.manifest.id)))
        elif args.command == "list":
            for mid in bank.list_manifests():
                print(mid)
        elif args.command == "check":
            report = bank.check(read_data=args.read_data)
            for error in report.errors:
                print(error)
            print("ok" if report.ok else f"{len(report.errors)} error(s)")
            return 0 if report.ok else 1
        elif args.command == "gc":
            print(json.dumps(bank.gc(grace_seconds=args.grace_seconds).__dict__))
        elif args.command == "delete":
            bank.delete_manifest(args.id)
        elif args.command == "passwd":
            bank.change_passphrase(os.environ.get("BANK_NEW_PASSPHRASE", ""))
        return 0
    except BankError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
