"""Validation of ``parameters`` (plans, restores) against a provider's plugin schemas.

Keys are ``<type>`` or ``<type>#<uuid>`` of a known type; for a type the provider serves,
the property names must be declared by the plugin's schema and each value must satisfy it.
The karbor CLI sends every value as a string (``force=false``, ``size=3``), so strings are
first coerced to the declared type. Types the provider does not serve are kept unchecked,
as Karbor does.
"""
from __future__ import annotations

import json
from typing import Any

from karbor_site.errors import InvalidInput
from providers.config import ProviderConfig
from providers.constants import PARAMETER_KEY_RE, split_parameter_key
from providers.plugins.base import schema_errors

_TRUE = {"true", "1", "yes", "on", "y", "t"}
_FALSE = {"false", "0", "no", "off", "n", "f"}


def parameters_validate(
    *, provider: ProviderConfig, parameters: Any, schema_kind: str = "options_schema", field: str = "parameters"
) -> dict[str, dict[str, Any]]:
    """The parameters with CLI strings coerced; InvalidInput naming ``parameters.<key>[.<property>]``."""
    if not isinstance(parameters, dict):
        raise InvalidInput.for_field(field, "must be an object")
    cleaned: dict[str, dict[str, Any]] = {}
    for key, values in parameters.items():
        where = f"{field}.{key}"
        if not isinstance(key, str) or not PARAMETER_KEY_RE.match(key):
            raise InvalidInput.for_field(where, "keys must match ^[a-zA-Z0-9-_:.# ]{1,255}$")
        try:
            resource_type, _resource_id = split_parameter_key(key)
        except ValueError as exc:
            raise InvalidInput.for_field(where, str(exc)) from None
        if not isinstance(values, dict):
            raise InvalidInput.for_field(where, "must be an object of property: value")
        plugin = provider.plugins.get(resource_type)
        if plugin is None:
            cleaned[key] = dict(values)
            continue
        schema = getattr(plugin, schema_kind) or {}
        cleaned[key] = _validate_properties(values, schema, where)
    return cleaned


def _validate_properties(values: dict[str, Any], schema: dict[str, Any], where: str) -> dict[str, Any]:
    properties: dict[str, Any] = schema.get("properties", {})
    result: dict[str, Any] = {}
    for name, value in values.items():
        if name not in properties:
            allowed = ", ".join(sorted(properties)) or "none"
            raise InvalidInput.for_field(f"{where}.{name}", f"unknown property; allowed: {allowed}")
        prop_schema = properties[name]
        value = _coerce(value, prop_schema)
        errors = schema_errors(prop_schema, value)
        if errors:
            path, reason = errors[0]
            raise InvalidInput.for_field(f"{where}.{name}{'.' + path if path else ''}", reason)
        result[name] = value
    return result


def _coerce(value: Any, schema: dict[str, Any]) -> Any:
    if not isinstance(value, str):
        return value
    types = schema.get("type")
    types = set(types) if isinstance(types, list) else {types}
    text = value.strip()
    if "boolean" in types and text.lower() in _TRUE | _FALSE:
        return text.lower() in _TRUE
    if "integer" in types:
        try:
            return int(text)
        except ValueError:
            pass
    if "number" in types:
        try:
            return float(text)
        except ValueError:
            pass
    if "array" in types and "string" not in types:
        if text.startswith("["):
            try:
                return json.loads(text)
            except ValueError:
                return value
        return [part.strip() for part in text.split(",") if part.strip()]
    return value
