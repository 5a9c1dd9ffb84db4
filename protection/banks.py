"""Opening a provider's bank, and where each resource's data lives inside a checkpoint.

The layout every flow and plugin shares:

* a checkpoint's bank manifest id is the checkpoint id;
* the manifest's ``meta`` is ``{"checkpoint": <catalog fields>}`` (see
  ``checkpoint_meta``), so ``rebuild_catalog`` can recreate the database rows from the
  bank alone;
* the items of resource (type, id) are stored under ``resource_prefix(type, id)``.
"""
from __future__ import annotations

import threading

from django.conf import settings

from protection.bank import Bank, LocalBackend, S3Backend
from protection.bank.backends import Backend
from protection.bank.bank import default_workers
from providers.config import BankConfig, ProviderConfig

_lock = threading.Lock()
_open_banks: dict[tuple, Bank] = {}


def backend_for(bank: BankConfig) -> Backend:
    """The storage backend an operator declared for a provider's bank."""
    if bank.type == "local":
        return LocalBackend(str(bank.path))
    return S3Backend(
        bucket=bank.bucket,
        prefix=bank.prefix,
        endpoint_url=bank.endpoint_url,
        access_key=bank.access_key(),
        secret_key=bank.secret_key(),
        region=bank.region,
        create_bucket=True,
    )


def bank_for_provider(provider: ProviderConfig) -> Bank:
    """The provider's bank, created on first use; one open Bank per process and configuration.

    Opening costs a scrypt key derivation, hence the cache; the key includes the
    passphrase so a rotated passphrase reopens.
    """
    passphrase = provider.bank.passphrase()
    key = (provider.id, provider.bank, passphrase)
    with _lock:
        bank = _open_banks.get(key)
        if bank is None:
            bank = Bank.init_or_open(backend_for(provider.bank), passphrase=passphrase, workers=bank_workers())
            _open_banks[key] = bank
        return bank


def bank_workers() -> int:
    """Threads per bank: ``KARBOR_BANK_WORKERS``, where 0 (the default) means one per core, at most 8."""
    configured = int(getattr(settings, "KARBOR_BANK_WORKERS", 0) or 0)
    return configured if configured > 0 else default_workers()


def forget_banks() -> None:
    """Drop cached banks (tests that recreate a bank directory call this)."""
    with _lock:
        _open_banks.clear()


def resource_prefix(resource_type: str, resource_id: str) -> str:
    """Where a resource's items live inside a checkpoint, e.g. ``Filesystem::Directory/ab12…``."""
    return f"{resource_type}/{resource_id}"
