"""Loaded with ``-p`` before Django starts: each test run gets its own data dir, never ./var."""
import os
import tempfile

os.environ.setdefault("KARBOR_DATA_DIR", tempfile.mkdtemp(prefix="karbor-test-"))
