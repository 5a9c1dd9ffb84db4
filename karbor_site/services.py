"""Site-wide maintenance services."""
from __future__ import annotations

from datetime import timedelta

from django.apps import apps
from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone

from karbor_site.db import SoftDeleteModel


def soft_delete_models() -> list[type[SoftDeleteModel]]:
    return [model for model in apps.get_models() if issubclass(model, SoftDeleteModel)]


def purge_deleted(*, older_than_days: int, dry_run: bool = False) -> dict[str, int]:
    """Hard-delete soft-deleted rows whose ``deleted_at`` is older than the cut-off, per table.

    A row still referenced through a PROTECT foreign key (a trigger whose deleted scheduled
    operation is younger than the cut-off) is kept until a later purge.
    """
    cutoff = timezone.now() - timedelta(days=older_than_days)
    counts: dict[str, int] = {}
    # Tables that others point at go last, so their children are gone by then.
    models = sorted(soft_delete_models(), key=lambda m: len(m._meta.related_objects))
    with transaction.atomic():
        for model in models:
            stale = model.all_objects.filter(deleted=True, deleted_at__lte=cutoff)
            if dry_run:
                counts[model._meta.db_table] = stale.count()
                continue
            try:
                with transaction.atomic():
                    removed = stale.delete()[1].get(model._meta.label, 0)
            except ProtectedError:
                removed = 0
                for row in stale:
                    try:
                        with transaction.atomic():
                            row.delete()
                        removed += 1
                    except ProtectedError:
                        continue
            counts[model._meta.db_table] = removed
    return counts
