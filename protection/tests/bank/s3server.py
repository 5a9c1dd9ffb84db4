"""Start a real S3 server process (moto) for tests; importable by any test package.

    server = start_moto_server()      # raises S3ServerUnavailable if it cannot start
    ... S3Backend(bucket=..., endpoint_url=server.endpoint_url, access_key="test", secret_key="test")
    server.stop()
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from karbor_site.testing.servers import stop_process

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"


class S3ServerUnavailable(RuntimeError):
    """The moto server could not be started (missing package, no free port, timeout)."""


@dataclass
class MotoServer:
    """A running moto server subprocess."""

    process: subprocess.Popen
    endpoint_url: str

    def stop(self) -> None:
        """Terminate the server process (kill if it does not exit promptly)."""
        stop_process(self.process)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto_server(timeout: float = 30.0) -> MotoServer:
    """Start ``python -m moto.server`` on a free local port and wait until it answers HTTP."""
    port = _free_port()
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
               AWS_DEFAULT_REGION=REGION)
    # werkzeug logs every request to stderr: a pipe nobody drains would fill and hang the
    # server mid-test, so the log goes to an unlinked temp file, read only if start-up fails.
    log = tempfile.TemporaryFile()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL, stderr=log, env=env,
        )
    except OSError as exc:
        raise S3ServerUnavailable(f"cannot start moto server: {exc}") from exc
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            err = log.read().decode(errors="replace")[-2000:]
            raise S3ServerUnavailable(f"moto server exited with {proc.returncode}: {err}")
        try:
            urllib.request.urlopen(url + "/", timeout=1).close()
            return MotoServer(proc, url)
        except urllib.error.HTTPError:
            return MotoServer(proc, url)  # any HTTP answer means it is serving
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise S3ServerUnavailable(f"moto server did not answer on {url} within {timeout:.0f}s")
