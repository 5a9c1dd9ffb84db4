"""Batched garbage collection of a provider's bank.

A checkpoint delete only removes its manifest and asks for a GC with ``bank_gc_request``;
one debounced task per provider (``karbor.protection.bank_gc``, sent
KARBOR_BANK_GC_DELAY seconds later) then sweeps whatever every delete of that window left
unreferenced. The scheduled retention calls ``bank_gc_request`` once after deleting many
checkpoints, or relies on the deletes' own requests — either way one GC runs.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from protection.bank import BankError, BankLockedError
from protection.banks import bank_for_provider
from protection.models import BankGcRequest
from providers.registry import get_registry

log = logging.getLogger(__name__)

GC_TASK = "karbor.protection.bank_gc"


def bank_gc_request(*, provider_id: str, delay: float | None = None) -> bool:
    """Ask for a GC of the provider's bank; True when this call queued the (one) GC task.

    Guarded: only the caller that flips ``queued`` false → true sends the task, after commit.
    A broker that refuses it leaves the request un-queued, so the next request sends it; a GC
    queued longer than KARBOR_QUEUED_TIMEOUT ago (its message lost) is queued again.
    """
    delay = float(settings.KARBOR_BANK_GC_DELAY if delay is None else delay)
    now = timezone.now()
    lost = now - timedelta(seconds=delay + settings.KARBOR_QUEUED_TIMEOUT)
    with transaction.atomic():
        BankGcRequest.objects.get_or_create(provider_id=provider_id, defaults={"requested_at": now})
        BankGcRequest.objects.filter(provider_id=provider_id).update(requested_at=now)
        queued = BankGcRequest.objects.filter(
            Q(queued=False) | Q(queued_at__lt=lost), provider_id=provider_id
        ).update(queued=True, queued_at=now) == 1
        if queued:
            transaction.on_commit(lambda: _send(provider_id, delay))
    return queued


def _send(provider_id: str, delay: float) -> None:
    try:
        bank_gc.apply_async((provider_id,), countdown=delay)
    except (BrokerError, OSError) as exc:
        log.error("GC of provider %s could not be queued (the next delete asks again): %s", provider_id, exc)
        BankGcRequest.objects.filter(provider_id=provider_id).update(queued=False, last_error=str(exc)[:1000])


def bank_gc_run(*, provider_id: str) -> str:
    """Run the requested GC of one provider's bank; returns what happened (for the task's result)."""
    # Un-queue first: a delete that lands while this GC runs queues the next one.
    BankGcRequest.objects.filter(provider_id=provider_id).update(queued=False)
    provider = get_registry().find(provider_id)
    if provider is None:
        return "provider gone"
    try:
        bank_for_provider(provider).gc(grace_seconds=settings.KARBOR_BANK_GC_GRACE_SECONDS)
    except BankLockedError as exc:
        log.info("GC of provider %s postponed, the bank is locked: %s", provider_id, exc)
        bank_gc_request(provider_id=provider_id)
        return "postponed"
    except BankError as exc:
        log.warning("GC of provider %s failed (run bank_check)", provider_id, exc_info=True)
        BankGcRequest.objects.filter(provider_id=provider_id).update(last_error=str(exc)[:1000])
        return "failed"
    BankGcRequest.objects.filter(provider_id=provider_id).update(last_run_at=timezone.now(), last_error="")
    return "done"


@shared_task(name=GC_TASK, acks_late=True, ignore_result=True)
def bank_gc(provider_id: str) -> str:
    """The one debounced GC of a provider's bank."""
    return bank_gc_run(provider_id=provider_id)
