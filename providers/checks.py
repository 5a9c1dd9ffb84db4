"""``manage.py check`` reports invalid provider files before the service starts serving."""
from django.core.checks import Error, register
from django.core.exceptions import ImproperlyConfigured


@register("providers")
def provider_files_check(app_configs=None, **kwargs) -> list[Error]:
    from providers.registry import load_registry

    try:
        load_registry()
    except ImproperlyConfigured as exc:
        return [
            Error(
                str(exc),
                hint="Fix the provider file named above (see providers/providers.d/default.yaml for the format).",
                id="providers.E001",
            )
        ]
    return []
