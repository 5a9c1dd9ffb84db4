"""Loaded with ``-p`` before Django starts: each test run gets its own data dir, never ./var."""
import os
import secrets
import tempfile

from karbor_site.secret_key import distributed_shape_reason

os.environ.setdefault("KARBOR_DATA_DIR", tempfile.mkdtemp(prefix="karbor-test-"))
# The PostgreSQL run is the distributed shape, which refuses to start without a key; the
# service processes that tests start inherit this one. The SQLite run keeps generating its own.
if distributed_shape_reason(
    database_url=os.environ.get("KARBOR_DATABASE_URL"), broker_url=os.environ.get("KARBOR_BROKER_URL")
):
    os.environ.setdefault("KARBOR_SECRET_KEY", "test-" + secrets.token_urlsafe(40))
