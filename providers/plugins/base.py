"""The plugin base class: one plugin serves one resource type for one provider.

This is the protectable side (list, show, dependencies) plus the JSON schemas a provider
publishes as its ``extended_info_schema``. The operator's options for the plugin (from the
provider file) are validated against ``config_schema`` when the plugin is built.
"""
from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import jsonschema
from django.core.exceptions import ImproperlyConfigured

from karbor_site.errors import NotFound
from protection.bank.errors import BankError

if TYPE_CHECKING:  # the bank is only handed to plugins at run time
    from protection.bank import Bank, Writer


@dataclass
class Instance:
    """A protectable instance as the protectables API shows it."""

    id: str
    type: str
    name: str
    extra_info: dict[str, Any] | None = None
    dependent_resources: list[Instance] = field(default_factory=list)

    def as_dict(self, *, with_dependents: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": self.type, "name": self.name, "extra_info": self.extra_info}
        if with_dependents:
            data["dependent_resources"] = [dep.as_dict(with_dependents=False) for dep in self.dependent_resources]
        return data


def json_path(parts) -> str:
    """``["sources", 0, "path"]`` → ``"sources.0.path"`` (the field names used in error messages)."""
    return ".".join(str(part) for part in parts)


def schema_errors(schema: dict, value: Any) -> list[tuple[str, str]]:
    """Every violation of ``schema`` by ``value`` as ``(dotted path, reason)``, most specific first."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(value), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [(json_path(error.absolute_path), error.message) for error in errors]


class PluginError(Exception):
    """A protect, restore, verify or delete of one resource failed; the message is shown to the tenant."""


@contextmanager
def bank_reading(bank: Bank) -> Iterator[dict]:
    """Read a checkpoint's data under a reader lease (GC leaves what readers use alone); yields the chunk
    lookup. Bank errors become PluginError with the bank's reason."""
    try:
        lease = bank.take_lease("reader")
    except BankError as exc:
        raise PluginError(str(exc)) from None
    try:
        yield bank.load_lookup(refresh=True)
    except BankError as exc:
        raise PluginError(str(exc)) from None
    finally:
        lease.release()


@dataclass
class ProtectContext:
    """What a plugin's ``protect`` gets: the resource, its merged parameters, the open bank writer.

    Items must be written under ``prefix`` (``protection.banks.resource_prefix``). The
    writer was opened with the previous checkpoint of the same plan as its parent, so
    unchanged files reuse their chunks.
    """

    project_id: str
    resource: Instance
    parameters: dict[str, Any]
    writer: Writer
    prefix: str
    on_progress: Callable[..., None] | None = None


@dataclass
class RestoreContext:
    """What a plugin's ``restore`` gets. ``target`` is None for a restore in place."""

    project_id: str
    resource: Instance
    saved_info: dict[str, Any]
    parameters: dict[str, Any]
    bank: Bank
    checkpoint_id: str
    prefix: str
    target: str | None = None
    on_progress: Callable[..., None] | None = None


@dataclass
class VerifyContext:
    """What a plugin's ``verify`` gets: read every byte of the resource's items back."""

    project_id: str
    resource: Instance
    saved_info: dict[str, Any]
    bank: Bank
    checkpoint_id: str
    prefix: str
    on_progress: Callable[..., None] | None = None


class ProtectablePlugin(abc.ABC):
    """Base class of every plugin; subclasses set the class attributes and implement ``list_instances``.

    ``options_schema`` validates a plan's ``parameters`` for this type, ``restore_schema`` a
    restore's and ``saved_info_schema`` describes what a checkpoint records per resource.
    ``parent_types`` are the types whose instances can contain instances of this type.
    """

    resource_type: ClassVar[str] = ""
    options_schema: ClassVar[dict[str, Any]] = {}
    restore_schema: ClassVar[dict[str, Any]] = {}
    saved_info_schema: ClassVar[dict[str, Any]] = {}
    parent_types: ClassVar[tuple[str, ...]] = ()
    # JSON Schema of the operator's options in the provider file.
    config_schema: ClassVar[dict[str, Any]] = {"type": "object"}

    def __init__(self, options: dict[str, Any] | None = None, *, provider_id: str = "") -> None:
        self.provider_id = provider_id
        self.options: dict[str, Any] = dict(options or {})
        errors = schema_errors(self.config_schema, self.options)
        if errors:
            path, reason = errors[0]
            raise ImproperlyConfigured(f"options{'.' + path if path else ''}: {reason}")
        self.configure(self.options)

    def configure(self, options: dict[str, Any]) -> None:
        """Checks beyond the JSON schema; raise ImproperlyConfigured naming the option."""

    @abc.abstractmethod
    def list_instances(self, *, project_id: str, parameters: dict[str, Any]) -> list[Instance]:
        """Every instance of ``resource_type`` that ``project_id`` may protect."""

    def show_instance(self, *, project_id: str, instance_id: str, parameters: dict[str, Any]) -> Instance:
        """One instance visible to ``project_id``; ``NotFound`` when absent or not visible.

        The default looks the id up among ``list_instances``; plugins with a cheaper lookup override it.
        """
        for instance in self.list_instances(project_id=project_id, parameters=parameters):
            if instance.id == instance_id:
                return instance
        raise NotFound(f"{self.resource_type} {instance_id} could not be found.")

    def dependencies(self, *, project_id: str, instance: Instance) -> list[Instance]:
        """Instances of this plugin's type contained in ``instance`` (whose type is one of ``parent_types``).

        A type without parents is never contained in anything, hence the empty default.
        """
        return []

    # --- protection side: the flows call these; each raises PluginError with a reason ---------
    def protect(self, context: ProtectContext) -> dict[str, Any]:
        """Stream the resource into ``context.writer``; return its saved info (``saved_info_schema``)."""
        raise PluginError(f"{self.resource_type} cannot be protected by {self.describe()}")

    def restore(self, context: RestoreContext) -> dict[str, Any]:
        """Bring the resource back from the checkpoint; return details for ``resources_status``."""
        raise PluginError(f"{self.resource_type} cannot be restored by {self.describe()}")

    def verify(self, context: VerifyContext) -> dict[str, Any]:
        """Read and check every byte of the resource in the checkpoint; raise PluginError on damage."""
        raise PluginError(f"{self.resource_type} cannot be verified by {self.describe()}")

    def delete(self, *, project_id: str, resource: Instance, saved_info: dict[str, Any]) -> None:
        """Remove anything the plugin stored outside the bank. Bank data goes with the manifest and GC."""

    @classmethod
    def describe(cls) -> str:
        return f"{cls.__module__}.{cls.__qualname__}"
