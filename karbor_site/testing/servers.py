"""Reaching the real servers tests need, and the rule for when one is absent.

Locally a missing server skips the test with the reason; under ``CI=true`` it fails it,
so CI can never pass by silently skipping the PostgreSQL, Redis, MySQL or S3 tests.
"""
from __future__ import annotations

import os
import socket
import subprocess

import pytest


# Where the shared servers answer (the machines' defaults; override to point the tests elsewhere).
PG_HOST = os.environ.get("KARBOR_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("KARBOR_TEST_PG_PORT", "5432"))
MYSQL_HOST = os.environ.get("KARBOR_TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("KARBOR_TEST_MYSQL_PORT", "3306"))
REDIS_HOST = os.environ.get("KARBOR_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("KARBOR_TEST_REDIS_PORT", "6379"))


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_server(name: str, host: str, port: int) -> None:
    """Skip (locally) or fail (under CI=true) when ``name`` does not answer on host:port."""
    if port_open(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if running_in_ci():
        pytest.fail(f"{message} (CI=true: server tests must not be skipped)", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen, timeout: float = 5) -> None:
    """Terminate a server process this test session started (kill it if it does not exit promptly)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
