"""Reads of the checkpoint catalog."""
from __future__ import annotations

from django.db.models import QuerySet

from karbor_site.errors import NotFound
from karbor_site.tenancy.access import ProjectAccess
from protection.models import Checkpoint


def checkpoint_queryset(*, provider_id: str, include_deleted: bool = False) -> QuerySet[Checkpoint]:
    """A provider's checkpoints; deleted ones only when asked (a GET still shows them as ``deleted``)."""
    manager = Checkpoint.all_objects if include_deleted else Checkpoint.objects
    return manager.filter(provider_id=provider_id)


def checkpoint_get(
    *, access: ProjectAccess, provider_id: str, checkpoint_id: str, include_deleted: bool = False
) -> Checkpoint:
    """One checkpoint of the provider. Another project's is a 404 unless the caller is the cloud admin.

    Karbor answered 403 there; a 404 tells a stranger nothing about which ids exist, as for
    plans, restores and verifications.
    """
    checkpoint = checkpoint_queryset(provider_id=provider_id, include_deleted=include_deleted).filter(
        pk=checkpoint_id
    ).first()
    if checkpoint is None or (checkpoint.project_id != access.project.id and not access.is_cloud_admin):
        raise NotFound(f"Checkpoint {checkpoint_id} could not be found.")
    return checkpoint


def newest_available_checkpoint(*, plan_id: str, provider_id: str) -> Checkpoint | None:
    return (
        Checkpoint.objects.filter(plan_id=plan_id, provider_id=provider_id, status="available")
        .order_by("-created_at")
        .first()
    )
