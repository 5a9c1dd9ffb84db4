"""Fixtures for bank tests: backends (local and a real moto S3 server) and small-chunk banks."""
from __future__ import annotations

import uuid

import pytest

from karbor_site.testing.servers import running_in_ci
from protection.bank import Bank, ChunkerParams, LocalBackend, S3Backend
from protection.tests.bank.s3server import ACCESS_KEY, REGION, SECRET_KEY, S3ServerUnavailable, start_moto_server

# Small chunks and packs keep tests fast while still exercising multi-chunk items and many packs.
SMALL_CHUNKS = ChunkerParams(min_size=16 * 1024, avg_size=64 * 1024, max_size=256 * 1024)
FAST_KDF = 2**12
PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server subprocess for the whole session (skips locally, fails under CI=true)."""
    try:
        server = start_moto_server()
    except S3ServerUnavailable as exc:
        if running_in_ci():
            pytest.fail(f"S3 server unavailable: {exc} (CI=true: server tests must not be skipped)", pytrace=False)
        pytest.skip(f"S3 server unavailable: {exc}")
    yield server
    server.stop()


def make_s3_backend(server, prefix: str = "bank") -> S3Backend:
    return S3Backend(bucket=f"b-{uuid.uuid4().hex[:12]}", prefix=prefix, endpoint_url=server.endpoint_url,
                     access_key=ACCESS_KEY, secret_key=SECRET_KEY, region=REGION, create_bucket=True)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.server)])
def backend(request, tmp_path):
    """Each test using this runs on both backends."""
    if request.param == "local":
        return LocalBackend(tmp_path / "bank")
    return make_s3_backend(request.getfixturevalue("s3_server"))


@pytest.fixture
def local_backend(tmp_path):
    return LocalBackend(tmp_path / "bank")


def new_bank(backend, passphrase=PASSPHRASE, chunker=SMALL_CHUNKS, **kwargs) -> Bank:
    """An initialised bank with test-friendly parameters."""
    open_kwargs = {k: kwargs.pop(k) for k in ("workers", "pack_size", "index_every_packs", "lease_ttl") if k in kwargs}
    open_kwargs.setdefault("workers", 2)
    return Bank.init(backend, passphrase, chunker=chunker, scrypt_n=FAST_KDF, **kwargs, **open_kwargs)
