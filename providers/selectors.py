"""Reads of the providers app: providers, protectable types and instances."""
from __future__ import annotations

from typing import Any

from karbor_site.errors import InvalidInput, NotFound
from providers.config import ProviderConfig
from providers.plugins.base import Instance
from providers.registry import get_registry


def provider_list(*, filters: dict[str, str] | None = None) -> list[ProviderConfig]:
    """Enabled providers ordered by id; ``filters`` compare exact values of name, description and id."""
    providers = get_registry().providers()
    for key, value in (filters or {}).items():
        providers = [provider for provider in providers if str(getattr(provider, key)) == value]
    return providers


def provider_get(*, provider_id: str) -> ProviderConfig:
    """One enabled provider; NotFound ``"Provider <id> could not be found."``."""
    return get_registry().get(provider_id)


def protectable_type_list() -> list[str]:
    return get_registry().protectable_types()


def protectable_type_get(*, resource_type: str) -> dict[str, Any]:
    """``{"name", "dependent_types"}`` of a served type; 400 for any other type (Karbor's answer)."""
    registry = get_registry()
    if resource_type not in registry.protectable_types():
        raise InvalidInput.for_field("protectable_type", f"Invalid protectable type provided: {resource_type!r}.")
    return {"name": resource_type, "dependent_types": registry.dependent_types(resource_type)}


def _with_dependents(project_id: str, instance: Instance) -> Instance:
    """Fill ``dependent_resources`` from every plugin whose parents include the instance's type (Karbor's rule)."""
    dependents: dict[tuple[str, str], Instance] = {}
    for provider in get_registry().providers():
        for plugin in provider.plugins.values():
            if instance.type in plugin.parent_types:
                for dependent in plugin.dependencies(project_id=project_id, instance=instance):
                    dependents.setdefault((dependent.type, dependent.id), dependent)
    instance.dependent_resources = list(dependents.values())
    return instance


def instance_list(*, project_id: str, resource_type: str, parameters: dict[str, Any]) -> list[Instance]:
    """Instances of ``resource_type`` visible to ``project_id`` across the providers serving it, deduplicated by id."""
    protectable_type_get(resource_type=resource_type)
    found: dict[str, Instance] = {}
    for _provider, plugin in get_registry().plugins_for(resource_type):
        for instance in plugin.list_instances(project_id=project_id, parameters=parameters):
            if instance.id not in found:
                found[instance.id] = _with_dependents(project_id, instance)
    return list(found.values())


def instance_get(*, project_id: str, resource_type: str, instance_id: str, parameters: dict[str, Any]) -> Instance:
    """One instance visible to ``project_id`` through any provider serving the type; NotFound otherwise."""
    protectable_type_get(resource_type=resource_type)
    for _provider, plugin in get_registry().plugins_for(resource_type):
        try:
            instance = plugin.show_instance(project_id=project_id, instance_id=instance_id, parameters=parameters)
        except NotFound:
            continue
        return _with_dependents(project_id, instance)
    raise NotFound(f"{resource_type} {instance_id} could not be found.")


def provider_instance_get(
    *, provider: ProviderConfig, project_id: str, resource_type: str, instance_id: str
) -> Instance:
    """One instance seen through one provider (what plans and protect flows use); NotFound otherwise."""
    plugin = provider.plugins.get(resource_type)
    if plugin is None:
        raise NotFound(f"Provider {provider.id} does not protect {resource_type}.")
    return plugin.show_instance(project_id=project_id, instance_id=instance_id, parameters={})
