from providers.testing import provider_dir  # noqa: F401
from restores.tests.kit import world  # noqa: F401
