"""Provider files: one YAML file per provider in ``KARBOR_PROVIDER_CONFIG_DIR``.

A file looks like::

    id: 6659007d-6f66-4a0f-9cb4-17d6aded0bb9
    name: Local file system provider
    description: Directories on this host, stored in a local bank
    enabled: true
    bank:
      type: local                      # or s3: endpoint_url, bucket, prefix, region,
      path: ${KARBOR_BANK_DIR}         #        access_key_env, secret_key_env
      passphrase_env: KARBOR_BANK_PASSPHRASE
    plugins:
      Filesystem::Directory:
        plugin: filesystem             # a short name, an entry point or a dotted path
        options: {sources: [...], restore_targets: [...]}

String values may use ``${VAR}`` and ``${VAR:-default}``. ``VAR`` is looked up in the Django
settings first (so ``${KARBOR_BANK_DIR}`` gets its default), then in the environment.
Secrets are never written in the file: the bank names the variables that hold them.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from karbor_site.db import is_uuid_like
from karbor_site.env import env_str
from providers.constants import RESOURCE_TYPES
from providers.plugins import resolve_plugin
from providers.plugins.base import ProtectablePlugin, schema_errors

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
_ENV_NAME = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}

PROVIDER_FILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string", "minLength": 1, "maxLength": 255},
        "description": {"type": ["string", "null"], "maxLength": 255},
        "enabled": {"type": "boolean"},
        "bank": {
            "type": "object",
            "properties": {
                "type": {"enum": ["local", "s3"]},
                "path": {"type": "string", "minLength": 1},
                "endpoint_url": {"type": ["string", "null"]},
                "bucket": {"type": "string", "minLength": 3, "maxLength": 63},
                "prefix": {"type": "string"},
                "region": {"type": ["string", "null"]},
                "access_key_env": _ENV_NAME,
                "secret_key_env": _ENV_NAME,
                "passphrase_env": _ENV_NAME,
            },
            "required": ["type"],
            "additionalProperties": False,
            "allOf": [
                {"if": {"properties": {"type": {"const": "local"}}}, "then": {"required": ["path"]}},
                {"if": {"properties": {"type": {"const": "s3"}}}, "then": {"required": ["bucket"]}},
            ],
        },
        "plugins": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {"plugin": {"type": "string", "minLength": 1}, "options": {"type": "object"}},
                "required": ["plugin"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["id", "name", "bank", "plugins"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class BankConfig:
    """Where a provider's checkpoints live. Secrets are read from the named variables when used."""

    type: str
    path: Path | None = None
    endpoint_url: str | None = None
    bucket: str | None = None
    prefix: str = ""
    region: str | None = None
    access_key_env: str | None = None
    secret_key_env: str | None = None
    passphrase_env: str | None = None

    def access_key(self) -> str | None:
        return lookup_variable(self.access_key_env) if self.access_key_env else None

    def secret_key(self) -> str | None:
        return lookup_variable(self.secret_key_env) if self.secret_key_env else None

    def passphrase(self) -> str | None:
        """The bank's encryption passphrase, or None for an unencrypted bank."""
        return lookup_variable(self.passphrase_env) if self.passphrase_env else None

    def location(self) -> str:
        if self.type == "local":
            return str(self.path)
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/") + (f" at {self.endpoint_url}" if self.endpoint_url else "")


@dataclass
class ProviderConfig:
    """One provider as the operator declared it, with its plugins built."""

    id: str
    name: str
    description: str | None
    enabled: bool
    bank: BankConfig
    plugins: dict[str, ProtectablePlugin] = field(default_factory=dict)
    plugin_refs: dict[str, str] = field(default_factory=dict)
    source_file: str = ""

    def extended_info_schema(self) -> dict[str, dict[str, Any]]:
        return {
            "options_schema": {t: p.options_schema for t, p in self.plugins.items()},
            "restore_schema": {t: p.restore_schema for t, p in self.plugins.items()},
            "saved_info_schema": {t: p.saved_info_schema for t, p in self.plugins.items()},
        }


def lookup_variable(name: str) -> str | None:
    """A setting of that name when there is one (so test overrides apply), else the environment."""
    value = getattr(settings, name, None)
    if value is not None and isinstance(value, (str, Path, int)) and not isinstance(value, bool):
        return str(value)
    return env_str(name)


def expand(value: Any, where: str) -> Any:
    """Replace ``${VAR}``/``${VAR:-default}`` in every string of ``value``; ``where`` names the key for errors."""
    if isinstance(value, dict):
        return {key: expand(item, f"{where}.{key}" if where else str(key)) for key, item in value.items()}
    if isinstance(value, list):
        return [expand(item, f"{where}.{index}") for index, item in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        found = lookup_variable(name)
        if found is None or (found == "" and default is not None):
            if default is None:
                raise ImproperlyConfigured(f"{where}: environment variable {name} is not set")
            return default
        return found

    return _ENV_REF.sub(substitute, value)


def load_provider_file(path: Path) -> ProviderConfig:
    """Parse and validate one provider file; ImproperlyConfigured names the file and the key."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ImproperlyConfigured(f"{path}: cannot read provider file: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ImproperlyConfigured(f"{path}: invalid YAML: {exc}") from exc
    try:
        return _build(raw, path)
    except ImproperlyConfigured as exc:
        raise ImproperlyConfigured(f"{path}: {exc}") from exc


def _build(raw: Any, path: Path) -> ProviderConfig:
    if not isinstance(raw, dict):
        raise ImproperlyConfigured("the file must hold a mapping with id, name, bank and plugins")
    data = expand(raw, "")
    errors = schema_errors(PROVIDER_FILE_SCHEMA, data)
    if errors:
        key, reason = errors[0]
        raise ImproperlyConfigured(f"{key or '(top level)'}: {reason}")
    if not is_uuid_like(data["id"]):
        raise ImproperlyConfigured(f"id: {data['id']!r} is not a valid UUID")
    bank_data = dict(data["bank"])
    if bank_data.get("path"):
        bank_path = Path(bank_data["path"])
        if not bank_path.is_absolute():
            raise ImproperlyConfigured(f"bank.path: {bank_data['path']!r} is not an absolute path")
        bank_data["path"] = bank_path
    bank = BankConfig(**bank_data)
    provider_id = str(uuid.UUID(data["id"]))
    plugins: dict[str, ProtectablePlugin] = {}
    refs: dict[str, str] = {}
    for resource_type, spec in data["plugins"].items():
        where = f"plugins.{resource_type}"
        if resource_type not in RESOURCE_TYPES:
            raise ImproperlyConfigured(f"{where}: unknown resource type; known types: {', '.join(RESOURCE_TYPES)}")
        try:
            plugin_class = resolve_plugin(spec["plugin"])
        except ImproperlyConfigured as exc:
            raise ImproperlyConfigured(f"{where}.plugin: {exc}") from exc
        if plugin_class.resource_type != resource_type:
            raise ImproperlyConfigured(
                f"{where}.plugin: {spec['plugin']} serves {plugin_class.resource_type}, not {resource_type}"
            )
        try:
            plugins[resource_type] = plugin_class(spec.get("options") or {}, provider_id=provider_id)
        except ImproperlyConfigured as exc:
            raise ImproperlyConfigured(f"{where}.{exc}" if str(exc).startswith("options") else f"{where}: {exc}") from exc
        refs[resource_type] = plugin_class.describe()
    return ProviderConfig(
        id=provider_id,
        name=data["name"],
        description=data.get("description"),
        enabled=data.get("enabled", True),
        bank=bank,
        plugins=plugins,
        plugin_refs=refs,
        source_file=str(path),
    )


def load_provider_dir(directory: Path) -> list[ProviderConfig]:
    """Every ``*.yaml`` file of ``directory`` (sorted by name); a missing directory holds no providers."""
    directory = Path(directory)
    if not directory.exists():
        return []
    if not directory.is_dir():
        raise ImproperlyConfigured(f"KARBOR_PROVIDER_CONFIG_DIR: {directory} is not a directory")
    providers: list[ProviderConfig] = []
    seen: dict[str, str] = {}
    for path in sorted(directory.glob("*.yaml")):
        provider = load_provider_file(path)
        if provider.id in seen:
            raise ImproperlyConfigured(f"{path}: id: provider {provider.id} is already declared in {seen[provider.id]}")
        seen[provider.id] = str(path)
        providers.append(provider)
    return providers
