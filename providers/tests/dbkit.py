"""Test kit of the database plugins: a provider file over the real local servers, and the flows run in-process.

Protect, restore and verify go through the same service and flow functions the Celery tasks
call (``checkpoint_protect_run``, ``restore_run``, ``verification_run``).
"""
from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from karbor_site.testing.servers import require_server, running_in_ci
from plans.services import plan_create
from protection import flows, services
from protection.banks import forget_banks
from protection.models import Checkpoint
from protection.verifications import verification_create, verification_run
from providers import registry
from providers.registry import get_registry
from providers.testing import OWNER_PROJECT, STRANGER_PROJECT, write_provider_file
from restores.flows import restore_run
from restores.models import Restore
from restores.services import restore_create

DB_PROVIDER_ID = "dbdbdbdb-0000-4000-8000-0000000000db"


def require_tools(*names: str) -> None:
    """Skip (locally) or fail (under CI=true) when a client tool is not installed."""
    missing = [name for name in names if shutil.which(name) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed"
    if running_in_ci():
        pytest.fail(f"{message} (CI=true: server tests must not be skipped)", pytrace=False)
    pytest.skip(message)


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def write_db_provider(provider_dir: Path, bank: Path, resource_type: str, plugin: str, options: dict[str, Any]) -> str:
    write_provider_file(
        provider_dir,
        {
            "id": DB_PROVIDER_ID,
            "name": "Database test provider",
            "enabled": True,
            "bank": {"type": "local", "path": str(bank)},
            "plugins": {resource_type: {"plugin": plugin, "options": options}},
        },
    )
    forget_banks()
    registry.clear()  # a test may rewrite the file after the registry was loaded
    return DB_PROVIDER_ID


@dataclass
class DbWorld:
    """A test database on a real server, the provider serving it, and every database a test created."""

    resource_type: str
    database: str
    created: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.created.append(self.database)

    @property
    def plugin(self):
        return get_registry().get(DB_PROVIDER_ID).plugins[self.resource_type]

    def instance_id(self, source_name: str = "local") -> str:
        source = next(s for s in self.plugin.sources if s.name == source_name)
        return self.plugin.instance_id(source, self.database)

    def name(self, prefix: str) -> str:
        """A new database name, dropped at the end of the test."""
        self.created.append(unique_name(prefix))
        return self.created[-1]


def server_options(database: str, server: dict[str, Any], bad_source: dict[str, Any]) -> dict[str, Any]:
    """Plugin options: ``local`` (the database, owner's project), ``whole-server`` (every database), ``nobody``
    (no projects), ``bad_source``, and restore targets ``scratch`` (owner's) and ``theirs`` (the stranger's)."""
    owner = [OWNER_PROJECT]
    return {
        "sources": [
            {"name": "local", **server, "databases": [database], "projects": owner},
            {"name": "whole-server", **server, "projects": owner},
            {"name": "nobody", **server, "databases": [database]},
            {**server, **bad_source, "databases": [database], "projects": owner},
        ],
        "restore_targets": [
            {"name": "scratch", **server, "projects": owner},
            {"name": "theirs", **server, "projects": [STRANGER_PROJECT]},
        ],
    }


def protect(resource_type: str, instance_id: str, *, name: str = "db", parameters: dict | None = None,
            plan=None) -> Checkpoint:
    if plan is None:
        plan = plan_create(
            project_id=OWNER_PROJECT, provider_id=DB_PROVIDER_ID, name="databases",
            resources=[{"id": instance_id, "type": resource_type, "name": name}], parameters=parameters or {},
        )
    checkpoint = services.checkpoint_create(
        project_id=OWNER_PROJECT, provider_id=DB_PROVIDER_ID, plan_id=plan.id, enqueue=False
    )
    return flows.checkpoint_protect_run(checkpoint_id=checkpoint.id, worker="test-worker:1")


def restore(checkpoint: Checkpoint, resource_type: str, parameters: dict | None = None, target: str | None = None) -> Restore:
    row = restore_create(
        project_id=OWNER_PROJECT, provider_id=DB_PROVIDER_ID, checkpoint_id=checkpoint.id,
        restore_target=target, parameters={resource_type: parameters or {}}, enqueue=False,
    )
    return restore_run(restore_id=row.id, worker="test-worker:1")


def verify(checkpoint: Checkpoint):
    row = verification_create(project_id=OWNER_PROJECT, provider_id=DB_PROVIDER_ID, checkpoint_id=checkpoint.id, enqueue=False)
    return verification_run(verification_id=row.id, worker="test-worker:1")


def only_reason(row) -> str:
    reasons = row.resources_reason or {}
    assert len(reasons) == 1, reasons
    return next(iter(reasons.values()))


@pytest.fixture
def db_settings(settings):
    settings.KARBOR_FLOW_HEARTBEAT_INTERVAL = 3600  # no heartbeat thread writing in plain db tests
    return settings


__all__ = [
    "DB_PROVIDER_ID", "DbWorld", "db_settings", "server_options", "only_reason", "protect", "require_server", "require_tools", "restore",
    "unique_name", "verify", "write_db_provider",
]
