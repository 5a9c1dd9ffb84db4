"""``manage.py rebuild_catalog``: recreate the checkpoints table from the banks' manifests."""
from __future__ import annotations

import sys

from django.core.management.base import BaseCommand

from protection.services import catalog_rebuild


class Command(BaseCommand):
    help = (
        "Rebuild the checkpoint catalog from the banks alone: rows for manifests that have none, "
        "available rows refreshed, available rows whose manifest is gone marked error."
    )

    def add_arguments(self, parser):
        parser.add_argument("--provider", help="Only this provider id.")

    def handle(self, *args, provider, **options):
        report = catalog_rebuild(provider_id=provider)
        self.stdout.write(
            f"{len(report.created)} created, {len(report.updated)} refreshed, "
            f"{len(report.missing)} marked error (manifest missing), "
            f"{len(report.reconciled)} failed protects made available from their manifest"
        )
        for checkpoint_id in report.missing:
            self.stdout.write(f"  missing manifest: {checkpoint_id}")
        for error in report.errors:
            self.stderr.write(f"  {error}")
        if report.errors:
            sys.exit(1)
