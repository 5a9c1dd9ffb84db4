"""Run the whole service as real processes for end-to-end tests.

``live_service()`` starts ``manage.py serve`` (gunicorn API + Celery worker + celery beat)
on a free port with a fresh data dir, its own file-system sources and the database kind
of the current test run: a SQLite file in the data dir, or, when the run is on
PostgreSQL, a database of its own that it creates and drops (pytest-django's test
database lives inside a transaction that other processes cannot see). It migrates,
creates a project with a member and a token through the management commands, waits for
``GET /`` and yields a :class:`LiveService`. On exit it stops serve with SIGTERM and
then kills anything still left in serve's session, so no test leaves processes behind.

``python -m karbor_site.testing.live --check-postgres URL`` exits 0 when a PostgreSQL
server answers at URL (used by ``make test`` to decide about its PostgreSQL run).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from urllib.parse import urlsplit, urlunsplit
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
MANAGE = str(BASE_DIR / "manage.py")

# Runs inside the service's environment: the same management commands an operator uses.
_SETUP_SCRIPT = """
import io, sys, django
django.setup()
from django.core.management import call_command
project_id, username = sys.argv[1], sys.argv[2]
call_command("migrate", interactive=False, verbosity=0)
call_command("create_project", project_id, name="live test project", stdout=io.StringIO())
call_command("add_member", project_id, username, role="member", stdout=io.StringIO())
out = io.StringIO()
call_command("issue_token", username, stdout=out)
print(out.getvalue().strip())
"""


@dataclass
class LiveService:
    """A running service: where it answers and who may use it."""

    base_url: str
    project_id: str
    token: str
    data_dir: Path
    sources_dir: Path
    env: dict[str, str] = field(repr=False)
    process: subprocess.Popen = field(repr=False)
    log_path: Path = field(repr=False)

    def __iter__(self):
        # So ``base_url, project_id, token = service`` works.
        return iter((self.base_url, self.project_id, self.token))

    @property
    def endpoint(self) -> str:
        """What karborclient calls the endpoint: it already holds ``/v1/<project_id>``."""
        return f"{self.base_url}/v1/{self.project_id}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def session_pids(self) -> list[int]:
        """Every live process started by serve (they all stay in its session)."""
        return session_pids(self.process.pid)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def session_pids(session_id: int) -> list[int]:
    """Pids of the live (non-zombie) processes whose session id is ``session_id``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state ppid pgrp session ...
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == session_id and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def kill_session(session_id: int) -> None:
    for pid in session_pids(session_id):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def wait_for_http(url: str, *, timeout: float, process: subprocess.Popen | None = None) -> int:
    """Poll ``url`` until it answers with any HTTP status; return that status."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback only
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            pass
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the service exited with code {process.returncode} before answering {url}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.2)


# --- databases -------------------------------------------------------------------------


def _pg_connect(url: str, dbname: str = "postgres"):
    import dj_database_url
    import psycopg2

    cfg = dj_database_url.parse(url)
    return psycopg2.connect(
        dbname=dbname,
        user=cfg.get("USER") or None,
        password=cfg.get("PASSWORD") or None,
        host=cfg.get("HOST") or None,
        port=cfg.get("PORT") or None,
        connect_timeout=3,
    )


def postgres_reachable(url: str) -> bool:
    """True when the PostgreSQL server of ``url`` accepts a login (to its ``postgres`` db)."""
    try:
        _pg_connect(url).close()
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable"; say why
        print(f"PostgreSQL check: {str(exc).strip()}", file=sys.stderr)
        return False
    return True


@contextlib.contextmanager
def _postgres_database(url: str) -> Iterator[str]:
    """Create a throw-away database on the server of ``url``; yield its URL; drop it after."""
    name = f"karbor_live_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    conn = _pg_connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@contextlib.contextmanager
def _database_for(env: dict[str, str]) -> Iterator[None]:
    """Point ``env`` at a fresh database of the same kind as the current run's."""
    url = os.environ.get("KARBOR_DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://", "pgsql://")):
        with _postgres_database(url) as live_url:
            env["KARBOR_DATABASE_URL"] = live_url
            yield
        return
    if url and not url.startswith("sqlite"):
        raise RuntimeError(f"live_service supports SQLite and PostgreSQL runs, not {url.split(':', 1)[0]}")
    env.pop("KARBOR_DATABASE_URL", None)  # the embedded default: a SQLite file in the data dir
    yield


# --- the service -----------------------------------------------------------------------


def _make_sources(root: Path) -> None:
    for name, files in {"app-config": {"app.ini": "[app]\nname = demo\n"}, "app-data": {"rows.csv": "1,a\n2,b\n"}}.items():
        directory = root / name
        directory.mkdir(parents=True)
        for filename, text in files.items():
            (directory / filename).write_text(text)


def service_env(data_dir: Path, port: int) -> dict[str, str]:
    """The environment of a service process: the caller's, minus test-run settings."""
    env = dict(os.environ)
    for name in ("KARBOR_EXPECT_DB_VENDOR", "PYTEST_CURRENT_TEST", "PYTEST_ADDOPTS", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        env.pop(name, None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "karbor_site.settings",
            "KARBOR_DATA_DIR": str(data_dir),
            "PORT": str(port),
            "KARBOR_BIND": f"127.0.0.1:{port}",
            "KARBOR_WEB_WORKERS": "1",
            "KARBOR_WORKER_CONCURRENCY": "1",
            "KARBOR_DEBUG": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    # The embedded broker, whatever the caller's shell had: the test owns the whole service.
    env.pop("KARBOR_BROKER_URL", None)
    return env


@contextlib.contextmanager
def live_service(
    *, serve_args: tuple[str, ...] = (), extra_env: dict[str, str] | None = None, timeout: float = 60
) -> Iterator[LiveService]:
    """Start the service as real processes; yield a :class:`LiveService`; stop it."""
    root = Path(tempfile.mkdtemp(prefix="karbor-live-"))
    data_dir, sources = root / "data", root / "sources"
    data_dir.mkdir()
    _make_sources(sources)
    (root / "restore").mkdir()
    port = free_port()
    env = service_env(data_dir, port)
    # Two declared sources: the protectables API lists each as a directory instance.
    env["KARBOR_FS_SOURCES"] = os.pathsep.join(str(path) for path in sorted(sources.iterdir()))
    env["KARBOR_FS_RESTORE_TARGETS"] = str(root / "restore")
    project_id = uuid.uuid4().hex
    # Deny by default: the sources above are the live project's only.
    env["KARBOR_FS_PROJECTS"] = project_id
    env.update(extra_env or {})
    log_path = root / "serve.log"
    process = None
    try:
        with _database_for(env):
            setup = subprocess.run(  # noqa: S603
                [sys.executable, "-c", _SETUP_SCRIPT, project_id, "live-user"],
                cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=timeout, check=False,
            )
            if setup.returncode != 0:
                raise RuntimeError(f"live service setup failed:\n{setup.stdout}\n{setup.stderr}")
            token = setup.stdout.strip().splitlines()[-1]
            with open(log_path, "wb") as log:
                process = subprocess.Popen(  # noqa: S603
                    [sys.executable, MANAGE, "serve", *serve_args],
                    cwd=BASE_DIR, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            base_url = f"http://127.0.0.1:{port}"
            try:
                wait_for_http(f"{base_url}/", timeout=timeout, process=process)
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"{exc}\n--- serve log ---\n{log_path.read_text(errors='replace')[-4000:]}") from exc
            try:
                yield LiveService(
                    base_url=base_url, project_id=project_id, token=token, data_dir=data_dir,
                    sources_dir=sources, env=env, process=process, log_path=log_path,
                )
            finally:
                stop_service(process)
    finally:
        if process is not None:
            kill_session(process.pid)
        shutil.rmtree(root, ignore_errors=True)


def stop_service(process: subprocess.Popen, timeout: float = 30) -> int | None:
    """SIGTERM serve and wait for it; SIGKILL its whole session if it hangs."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    kill_session(process.pid)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
    return process.returncode


def _main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--check-postgres":
        return 0 if postgres_reachable(argv[1]) else 1
    print("usage: python -m karbor_site.testing.live --check-postgres URL", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
