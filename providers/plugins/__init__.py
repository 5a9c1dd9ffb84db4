"""Plugin lookup: a dotted path, a short registered name, or an ``karbor.plugins`` entry point.

A third-party package ships a plugin by subclassing
:class:`providers.plugins.base.ProtectablePlugin` and naming it in a provider file, either by
dotted path or by the name of an entry point in the ``karbor.plugins`` group.
"""
from __future__ import annotations

from importlib.metadata import entry_points

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from providers.plugins.base import Instance, ProtectablePlugin

ENTRY_POINT_GROUP = "karbor.plugins"

_SHORT_NAMES: dict[str, str] = {
    "filesystem": "providers.plugins.filesystem.FilesystemDirectoryPlugin",
    "postgresql": "providers.plugins.postgresql.PostgreSQLDatabasePlugin",
    "mysql": "providers.plugins.mysql.MySQLDatabasePlugin",
    "redis": "providers.plugins.redis_db.RedisDatabasePlugin",
    "s3_bucket": "providers.plugins.s3_bucket.S3BucketPlugin",
}

__all__ = ["ENTRY_POINT_GROUP", "Instance", "ProtectablePlugin", "register_plugin", "registered_plugins", "resolve_plugin"]


def register_plugin(name: str, dotted_path: str) -> None:
    """Make ``name`` usable as ``plugin: <name>`` in provider files."""
    _SHORT_NAMES[name] = dotted_path


def registered_plugins() -> dict[str, str]:
    """Short names → dotted paths, including installed entry points."""
    names = {ep.name: ep.value.replace(":", ".") for ep in entry_points(group=ENTRY_POINT_GROUP)}
    names.update(_SHORT_NAMES)
    return names


def resolve_plugin(reference: str) -> type[ProtectablePlugin]:
    """The plugin class named by ``reference``; ImproperlyConfigured with the reason otherwise."""
    dotted = _SHORT_NAMES.get(reference)
    if dotted is None:
        matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == reference]
        if matches:
            try:
                cls = matches[0].load()
            except Exception as exc:  # a broken third-party package must not hide which plugin failed
                raise ImproperlyConfigured(f"cannot load plugin entry point {reference!r}: {exc}") from exc
            return _checked(reference, cls)
        dotted = reference
    if "." not in dotted:
        known = ", ".join(sorted(registered_plugins()))
        raise ImproperlyConfigured(f"unknown plugin {reference!r}; use a dotted path or one of: {known}")
    try:
        cls = import_string(dotted)
    except ImportError as exc:
        raise ImproperlyConfigured(f"cannot import plugin {dotted!r}: {exc}") from exc
    return _checked(reference, cls)


def _checked(reference: str, cls: object) -> type[ProtectablePlugin]:
    if not (isinstance(cls, type) and issubclass(cls, ProtectablePlugin)):
        raise ImproperlyConfigured(f"plugin {reference!r} is not a subclass of providers.plugins.base.ProtectablePlugin")
    if not cls.resource_type:
        raise ImproperlyConfigured(f"plugin {reference!r} does not declare a resource_type")
    return cls
