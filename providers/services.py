"""Writes of the providers app: mirroring the provider files into the ``providers`` table."""
from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from providers.models import Provider
from providers.registry import get_registry, reload


@transaction.atomic
def providers_sync(*, reload_files: bool = False) -> list[Provider]:
    """Make the ``providers`` table match the provider files: upsert each, delete the rest.

    ``reload_files`` re-reads the files first (the management command); otherwise the cached
    registry is used. Raises ImproperlyConfigured when a file is invalid, leaving the table as it was.
    """
    registry = reload() if reload_files else get_registry()
    now = timezone.now()
    rows = []
    for config in registry.all_providers():
        row, _created = Provider.objects.update_or_create(
            id=config.id,
            defaults={
                "name": config.name,
                "description": config.description,
                "enabled": config.enabled,
                "bank_type": config.bank.type,
                "bank_location": config.bank.location(),
                "bank_encrypted": bool(config.bank.passphrase()),
                "resource_types": ", ".join(config.plugins),
                "plugins": dict(config.plugin_refs),
                "extended_info_schema": config.extended_info_schema(),
                "source_file": config.source_file,
                "synced_at": now,
            },
        )
        rows.append(row)
    Provider.objects.exclude(id__in=[row.id for row in rows]).delete()
    return rows
