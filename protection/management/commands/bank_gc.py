"""``manage.py bank_gc``: reclaim the space of deleted checkpoints in each provider's bank."""
from __future__ import annotations

import sys

from django.conf import settings
from django.core.management.base import BaseCommand

from protection.bank import BankError, BankLockedError
from protection.banks import bank_for_provider
from providers.registry import get_registry


class Command(BaseCommand):
    help = "Garbage-collect the banks (mark and sweep under the bank's GC lock)."

    def add_arguments(self, parser):
        parser.add_argument("--provider", help="Only this provider id.")
        parser.add_argument("--grace-seconds", type=int, default=None,
                            help="Keep data younger than this (default KARBOR_BANK_GC_GRACE_SECONDS).")
        parser.add_argument("--dry-run", action="store_true", help="Report only.")

    def handle(self, *args, provider, grace_seconds, dry_run, **options):
        registry = get_registry()
        providers = [registry.get(provider)] if provider else registry.providers()
        grace = settings.KARBOR_BANK_GC_GRACE_SECONDS if grace_seconds is None else grace_seconds
        failed = False
        for config in providers:
            try:
                report = bank_for_provider(config).gc(grace_seconds=grace, dry_run=dry_run)
            except BankLockedError as exc:
                self.stderr.write(f"{config.id} ({config.name}): skipped, {exc}")
                failed = True
                continue
            except BankError as exc:
                self.stderr.write(f"{config.id} ({config.name}): GC failed: {exc}")
                failed = True
                continue
            self.stdout.write(
                f"{config.id} ({config.name}): {report.manifests} checkpoints, {report.deleted_packs} packs deleted, "
                f"{report.repacked_packs} repacked, {report.bytes_before} -> {report.bytes_after} bytes"
                + (" (dry run)" if dry_run else "")
            )
        if failed:
            sys.exit(1)
