from providers.testing import fs_provider, provider_dir  # noqa: F401
