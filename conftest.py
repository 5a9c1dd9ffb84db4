"""Root conftest: shared fixtures for every app's tests (see karbor_site/testing/)."""

pytest_plugins = ["karbor_site.testing.fixtures"]
