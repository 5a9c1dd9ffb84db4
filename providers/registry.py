"""The provider registry: every provider declared in ``KARBOR_PROVIDER_CONFIG_DIR``, loaded once.

``get_registry()`` loads lazily and caches at module level; ``reload()`` rebuilds it (tests,
``sync_providers``). Changing one of the settings it reads (pytest-django's ``settings``
fixture, ``override_settings``) drops the cache, so the next call sees the new files.
"""
from __future__ import annotations

import threading
import uuid
from pathlib import Path

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from karbor_site.errors import NotFound
from providers.config import ProviderConfig, load_provider_dir
from providers.plugins.base import ProtectablePlugin

_WATCHED_SETTINGS = {
    "KARBOR_PROVIDER_CONFIG_DIR",
    "KARBOR_FS_SOURCES",
    "KARBOR_FS_RESTORE_TARGETS",
    "KARBOR_FS_PROJECTS",
    "KARBOR_BANK_DIR",
    "KARBOR_BANK_PASSPHRASE",
}

_lock = threading.Lock()
_registry: ProviderRegistry | None = None


class ProviderRegistry:
    """Lookups over the configured providers; only enabled ones are served by the API."""

    def __init__(self, providers: list[ProviderConfig]) -> None:
        self._providers = {provider.id: provider for provider in sorted(providers, key=lambda p: p.id)}

    def all_providers(self) -> list[ProviderConfig]:
        """Every declared provider, disabled ones included (the admin shows them)."""
        return list(self._providers.values())

    def providers(self) -> list[ProviderConfig]:
        """Enabled providers ordered by id, as the API lists them."""
        return [provider for provider in self._providers.values() if provider.enabled]

    def find(self, provider_id: str) -> ProviderConfig | None:
        """The enabled provider with that id (any UUID spelling), or None."""
        try:
            key = str(uuid.UUID(str(provider_id)))
        except ValueError:
            return None
        provider = self._providers.get(key)
        return provider if provider is not None and provider.enabled else None

    def get(self, provider_id: str) -> ProviderConfig:
        """The enabled provider with that id; NotFound with Karbor's message otherwise."""
        provider = self.find(provider_id)
        if provider is None:
            raise NotFound(f"Provider {provider_id} could not be found.")
        return provider

    def protectable_types(self) -> list[str]:
        """Types served by at least one enabled provider, in order of first appearance."""
        types: dict[str, None] = {}
        for provider in self.providers():
            for resource_type in provider.plugins:
                types.setdefault(resource_type)
        return list(types)

    def plugins_for(self, resource_type: str) -> list[tuple[ProviderConfig, ProtectablePlugin]]:
        """``(provider, plugin)`` for every enabled provider serving ``resource_type``."""
        return [
            (provider, provider.plugins[resource_type])
            for provider in self.providers()
            if resource_type in provider.plugins
        ]

    def dependent_types(self, resource_type: str) -> list[str]:
        """Types whose plugin names ``resource_type`` among its parents (Karbor's ``dependent_types``)."""
        types: dict[str, None] = {}
        for provider in self.providers():
            for child_type, plugin in provider.plugins.items():
                if resource_type in plugin.parent_types:
                    types.setdefault(child_type)
        return list(types)


def load_registry(config_dir: Path | str | None = None) -> ProviderRegistry:
    """Build a fresh registry from ``config_dir`` (default: the setting); raises ImproperlyConfigured."""
    directory = Path(config_dir if config_dir is not None else settings.KARBOR_PROVIDER_CONFIG_DIR)
    return ProviderRegistry(load_provider_dir(directory))


def get_registry() -> ProviderRegistry:
    """The cached registry, loaded on first use."""
    global _registry
    registry = _registry
    if registry is None:
        with _lock:
            if _registry is None:
                _registry = load_registry()
            registry = _registry
    return registry


def reload() -> ProviderRegistry:
    """Drop the cache and load the provider files again."""
    global _registry
    with _lock:
        _registry = load_registry()
        return _registry


def clear() -> None:
    """Drop the cache; the next ``get_registry()`` loads again."""
    global _registry
    with _lock:
        _registry = None


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs) -> None:
    if setting in _WATCHED_SETTINGS:
        clear()
