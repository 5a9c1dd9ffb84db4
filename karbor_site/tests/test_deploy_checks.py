"""Production settings pass Django's deploy checks, and the OpenAPI schema is valid and warning-free."""
from __future__ import annotations

import os
import secrets
import string
import subprocess
import sys
from pathlib import Path

import pytest

from karbor_site.testing.live import BASE_DIR

MANAGE = str(BASE_DIR / "manage.py")


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603
        [sys.executable, MANAGE, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("KARBOR_")}
    env["KARBOR_DATA_DIR"] = str(tmp_path / "data")
    return env


def test_check_deploy_is_clean_with_production_settings(clean_env):
    alphabet = string.ascii_letters + string.digits + "!@#%^&*(-_=+)"
    clean_env.update(
        {
            "KARBOR_SECRET_KEY": "".join(secrets.choice(alphabet) for _ in range(50)),
            "KARBOR_DEBUG": "false",
            "KARBOR_SECURE": "true",
            "KARBOR_ALLOWED_HOSTS": "karbor.example.com",
        }
    )
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=clean_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_flags_a_development_configuration(clean_env):
    # The same check is not a rubber stamp: DEBUG on and no TLS settings are reported.
    clean_env.update({"KARBOR_DEBUG": "true", "KARBOR_SECURE": "false"})
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=clean_env)
    assert result.returncode != 0
    assert "security.W018" in result.stderr  # DEBUG in deployment
    assert "security.W004" in result.stderr  # no HSTS


def test_openapi_schema_validates_without_warnings(clean_env, tmp_path):
    schema = tmp_path / "schema.yml"
    result = manage("spectacular", "--validate", "--fail-on-warn", "--file", str(schema), env=clean_env)
    assert result.returncode == 0, result.stdout + result.stderr
    text = schema.read_text()
    assert text.startswith("openapi: 3")
    for path in ("/v1/{project_id}/plans", "/v1/{project_id}/providers", "/v1/{project_id}/triggers",
                 "/v1/{project_id}/scheduled_operations", "/v1/{project_id}/protectables"):
        assert f"  {path}:" in text, f"{path} missing from the schema"
