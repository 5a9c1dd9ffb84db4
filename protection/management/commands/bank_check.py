"""``manage.py bank_check``: verify each provider's bank (structure, and with --read-data every chunk)."""
from __future__ import annotations

import sys

from django.core.management.base import BaseCommand

from protection.bank import BankError
from protection.banks import bank_for_provider
from providers.registry import get_registry


class Command(BaseCommand):
    help = "Check the banks of the configured providers; exits 1 when any problem is found."

    def add_arguments(self, parser):
        parser.add_argument("--provider", help="Only this provider id.")
        parser.add_argument("--read-data", action="store_true", help="Also read and authenticate every chunk.")

    def handle(self, *args, provider, read_data, **options):
        registry = get_registry()
        providers = [registry.get(provider)] if provider else registry.providers()
        failed = False
        for config in providers:
            try:
                report = bank_for_provider(config).check(read_data=read_data)
            except BankError as exc:
                self.stderr.write(f"{config.id} ({config.name}): cannot check: {exc}")
                failed = True
                continue
            status = "ok" if report.ok else f"{len(report.errors)} problem(s)"
            self.stdout.write(
                f"{config.id} ({config.name}): {status}; {report.manifests} checkpoints, {report.packs} packs, "
                f"{report.chunks} chunks" + (f", {report.chunks_read} read" if read_data else "")
            )
            for error in report.errors:
                self.stderr.write(f"  {error}")
            failed = failed or not report.ok
        if failed:
            sys.exit(1)
