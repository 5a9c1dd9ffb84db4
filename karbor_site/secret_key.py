"""Django's secret key: from ``KARBOR_SECRET_KEY`` (or ``_FILE``), else generated into the data dir.

Generating is only for the embedded shape, where one machine runs everything. In the
distributed shape every node must sign sessions and tokens with the same key, and a key
generated into one node's data dir would silently differ between nodes, so start-up stops.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

SECRET_KEY_VARIABLE = "KARBOR_SECRET_KEY"
SECRET_KEY_FILENAME = "secret_key"
_EMBEDDED_BROKERS = ("filesystem", "memory")


def distributed_shape_reason(*, database_url: str | None, broker_url: str | None) -> str | None:
    """Why these URLs make the distributed shape (a networked database or broker), or None when embedded."""
    if database_url and not urlsplit(database_url).scheme.startswith("sqlite"):
        return f"KARBOR_DATABASE_URL points at {urlsplit(database_url).scheme}"
    if broker_url and urlsplit(broker_url).scheme not in _EMBEDDED_BROKERS:
        return f"KARBOR_BROKER_URL points at {urlsplit(broker_url).scheme}"
    return None


def resolve_secret_key(
    *, configured: str | None, data_dir: Path, distributed_reason: str | None, required: bool
) -> str:
    """The configured key, or the data dir's generated one; ImproperlyConfigured naming the variable when not allowed."""
    if configured:
        return configured
    if distributed_reason:
        raise ImproperlyConfigured(
            f"{SECRET_KEY_VARIABLE} must be set in the distributed shape ({distributed_reason}): every node "
            f"needs the same key (set {SECRET_KEY_VARIABLE} or {SECRET_KEY_VARIABLE}_FILE)"
        )
    if required:
        raise ImproperlyConfigured(f"{SECRET_KEY_VARIABLE} must be set (KARBOR_REQUIRE_SECRET_KEY is true)")
    return generated_secret_key(data_dir)


def generated_secret_key(data_dir: Path) -> str:
    """Read the data dir's key, creating it first: readable by the owner only from its first byte."""
    path = Path(data_dir) / SECRET_KEY_FILENAME
    try:
        existing = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    from django.core.management.utils import get_random_secret_key

    try:
        return _write_new_key(path, get_random_secret_key())
    except OSError as exc:
        raise ImproperlyConfigured(
            f"{SECRET_KEY_VARIABLE} is not set and a generated key cannot be written to {path}: {exc.strerror or exc}"
        ) from exc


def _write_new_key(path: Path, key: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{SECRET_KEY_FILENAME}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
    # 0600 at creation (not chmod afterwards): no window in which another user can read it.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
        # Two processes starting at once (API and worker): link() fails for the second, which
        # then uses the winner's key, so both sign with the same one. A reader never sees a
        # half-written file because the name appears only once the content is on disk.
        try:
            os.link(temporary, path)
        except FileExistsError:
            return path.read_text(encoding="utf-8").strip() or key
        except OSError:
            os.replace(temporary, path)  # a file system without hard links: still atomic
    finally:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
    return key
