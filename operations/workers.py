"""Who runs an operation: the value of a row's ``worker`` column."""
from __future__ import annotations

import os
import socket


def worker_name(task=None, *, label: str | None = None) -> str:
    """``<celery hostname>:<pid>`` inside a task, else ``<label>@<host>:<pid>`` (or ``<host>:<pid>``).

    The reaper names this value when the process dies, so it says where to look.
    """
    host = getattr(getattr(task, "request", None), "hostname", None) if task is not None else None
    if not host:
        host = f"{label}@{socket.gethostname()}" if label else socket.gethostname()
    return f"{host}:{os.getpid()}"[:255]
