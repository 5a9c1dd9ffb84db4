"""How a provider's bank is opened: the thread count the operator asked for."""
from __future__ import annotations

import pytest

from protection.banks import bank_for_provider, forget_banks
from providers import testing as provider_testing
from providers.registry import get_registry
from providers.testing import FS_PROVIDER_ID

fs_provider = provider_testing.fs_provider
provider_dir = provider_testing.provider_dir


@pytest.fixture
def fresh_banks():
    forget_banks()
    yield
    forget_banks()


def test_bank_workers_zero_means_one_thread_per_core(fs_provider, settings, monkeypatch, fresh_banks):
    settings.KARBOR_BANK_WORKERS = 0
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    assert bank_for_provider(get_registry().get(FS_PROVIDER_ID)).workers == 6


def test_bank_workers_zero_caps_at_eight_threads(fs_provider, settings, monkeypatch, fresh_banks):
    settings.KARBOR_BANK_WORKERS = 0
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    assert bank_for_provider(get_registry().get(FS_PROVIDER_ID)).workers == 8


def test_bank_workers_explicit_count_is_used(fs_provider, settings, fresh_banks):
    settings.KARBOR_BANK_WORKERS = 3
    assert bank_for_provider(get_registry().get(FS_PROVIDER_ID)).workers == 3
