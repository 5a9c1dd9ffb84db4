"""Resource types known to the service.

Karbor's eight OpenStack types (``karbor/common/constants.py``) plus the application types
this project protects for real. Plan and restore parameter keys must name one of them,
optionally followed by ``#<resource uuid>``.
"""
from __future__ import annotations

import re

from karbor_site.db import is_uuid_like

PROJECT_RESOURCE_TYPE = "OS::Keystone::Project"
SERVER_RESOURCE_TYPE = "OS::Nova::Server"
VOLUME_RESOURCE_TYPE = "OS::Cinder::Volume"
IMAGE_RESOURCE_TYPE = "OS::Glance::Image"
SHARE_RESOURCE_TYPE = "OS::Manila::Share"
NETWORK_RESOURCE_TYPE = "OS::Neutron::Network"
DATABASE_RESOURCE_TYPE = "OS::Trove::Instance"
POD_RESOURCE_TYPE = "OS::Kubernetes::Pod"

FILESYSTEM_DIRECTORY = "Filesystem::Directory"
POSTGRESQL_DATABASE = "PostgreSQL::Database"
MYSQL_DATABASE = "MySQL::Database"
REDIS_DATABASE = "Redis::Database"
S3_BUCKET = "S3::Bucket"

OPENSTACK_RESOURCE_TYPES = (
    PROJECT_RESOURCE_TYPE,
    SERVER_RESOURCE_TYPE,
    VOLUME_RESOURCE_TYPE,
    IMAGE_RESOURCE_TYPE,
    SHARE_RESOURCE_TYPE,
    NETWORK_RESOURCE_TYPE,
    DATABASE_RESOURCE_TYPE,
    POD_RESOURCE_TYPE,
)
APPLICATION_RESOURCE_TYPES = (FILESYSTEM_DIRECTORY, POSTGRESQL_DATABASE, MYSQL_DATABASE, REDIS_DATABASE, S3_BUCKET)
RESOURCE_TYPES = OPENSTACK_RESOURCE_TYPES + APPLICATION_RESOURCE_TYPES

# Karbor's `parameters` schema: keys and nested keys match this pattern.
PARAMETER_KEY_RE = re.compile(r"^[a-zA-Z0-9\-_:.# ]{1,255}$")


def split_parameter_key(key: str) -> tuple[str, str | None]:
    """``"OS::Cinder::Volume#<uuid>"`` → ``("OS::Cinder::Volume", "<uuid>")``; a bare type → ``(type, None)``.

    Raises ``ValueError`` with the reason when the key is not a known type (optionally with a UUID).
    """
    resource_type, sep, resource_id = key.partition("#")
    if resource_type not in RESOURCE_TYPES:
        raise ValueError(f"unknown resource type {resource_type!r}; known types: {', '.join(RESOURCE_TYPES)}")
    if not sep:
        return resource_type, None
    if not is_uuid_like(resource_id):
        raise ValueError(f"{resource_id!r} after '#' is not a valid UUID")
    return resource_type, resource_id
