"""``manage.py serve``: the API, a Celery worker and celery beat as one supervised unit.

Each part runs as a real process (gunicorn, ``celery worker``, ``celery beat`` with the
database scheduler) in its own process group, so a Ctrl-C reaches only this supervisor,
which then stops the children in order. If any child dies, the others are stopped and
serve exits non-zero: a process supervisor (systemd, a container runtime) then restarts
the whole unit instead of leaving, say, an API whose worker is gone.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from karbor_site.env import env_int, env_str

DEFAULT_PORT = 8000
BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
_PR_SET_PDEATHSIG = 1


def resolve_bind(port: int | None = None) -> str:
    """The host:port the API binds: ``KARBOR_BIND``, else ``127.0.0.1:$PORT`` (PORT default 8000).

    An explicit ``port`` replaces the port of whichever address applies.
    """
    bind = env_str("KARBOR_BIND") or f"127.0.0.1:{env_int('PORT', DEFAULT_PORT, minimum=1)}"
    if port is not None:
        host = bind.rsplit(":", 1)[0] if ":" in bind else bind
        bind = f"{host}:{port}"
    return bind


def default_worker_pool(broker_url: str) -> str:
    """``solo`` workers on the embedded broker, ``prefork`` on a networked one.

    Measured with ``bench/protect_bench.py`` (512 MiB, 2 cores): a protect through a solo
    worker took as long as the bank alone (+0-2 %), through a prefork or threads pool
    20-75 % longer. A solo worker does not service the broker connection while a task runs,
    though, and RabbitMQ drops connections that miss their heartbeats during a long task; the
    file-system broker has no connection to keep alive.
    """
    return "solo" if broker_url.startswith("filesystem://") else "prefork"


def public_url(bind: str) -> str:
    """The URL a local user types for ``bind`` (a wildcard address is reached via loopback)."""
    host, _, port = bind.rpartition(":")
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def _child_setup() -> None:
    # Own process group: the terminal's Ctrl-C goes to serve only, which stops the
    # children in order. PDEATHSIG: if serve itself is killed (-9), the children get
    # SIGTERM instead of living on as orphans holding the port and the queue.
    os.setpgid(0, 0)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the orphans are then the operator's to stop


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    description: str
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - argv built from our own constants
            self.argv,
            cwd=settings.BASE_DIR,
            stdin=subprocess.DEVNULL,
            preexec_fn=_child_setup,  # noqa: PLW1509 - serve is single-threaded here
        )

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else 0

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


class Supervisor:
    """Starts the children, waits, and stops them all when one dies or a signal arrives."""

    def __init__(self, children: list[Child], *, stop_timeout: float, write) -> None:
        self.children = children
        self.stop_timeout = stop_timeout
        self.write = write
        self.stop_signal: int | None = None
        self.force = False

    def _on_signal(self, signum, _frame) -> None:
        if self.stop_signal is not None and signum == signal.SIGINT:
            self.force = True  # a second Ctrl-C: do not wait for running tasks
        self.stop_signal = self.stop_signal or signum

    def run(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        for child in self.children:
            child.start()
            self.write(f"karbor serve: {child.name:<6} pid {child.pid:<7} {child.description}")
        self.write("karbor serve: Ctrl-C or SIGTERM stops everything.")
        exit_code = 0
        while self.stop_signal is None:
            dead = [child for child in self.children if not child.alive()]
            if dead:
                for child in dead:
                    self.write(
                        f"karbor serve: {child.name} (pid {child.pid}) exited with code "
                        f"{child.process.returncode}; stopping the others."
                    )
                exit_code = 1
                break
            time.sleep(0.2)
        else:
            self.write(f"karbor serve: {signal.Signals(self.stop_signal).name} received, stopping.")
        self.stop()
        return exit_code

    def stop(self) -> None:
        # Beat first (no new runs are scheduled), then the API, then the worker, which
        # finishes its current tasks within the timeout (acks_late re-queues the rest).
        order = sorted(self.children, key=lambda child: {"beat": 0, "api": 1, "worker": 2}.get(child.name, 3))
        for child in order:
            if child.alive():
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while any(child.alive() for child in order) and time.monotonic() < deadline and not self.force:
            time.sleep(0.1)
        for child in order:
            if child.alive():
                self.write(f"karbor serve: {child.name} (pid {child.pid}) did not stop in time; killing it.")
            # Kill the whole group: a gunicorn or prefork worker left behind its leader.
            child.signal_group(signal.SIGKILL)
            if child.process is not None:
                child.process.wait()
        self.write("karbor serve: stopped.")


class Command(BaseCommand):
    help = (
        "Run the service: the API (gunicorn), a Celery worker and celery beat, as real processes "
        "supervised together. Ctrl-C/SIGTERM stops all; if one dies, all stop and the exit code is 1."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=None, help="API port (default $PORT or 8000).")
        parser.add_argument("--bind", default=None, help="API host:port (default $KARBOR_BIND or 127.0.0.1:$PORT).")
        parser.add_argument("--no-api", action="store_true", help="Do not start the API.")
        parser.add_argument("--no-worker", action="store_true", help="Do not start a Celery worker.")
        parser.add_argument("--no-beat", action="store_true", help="Do not start celery beat.")

    def handle(self, *args, port, bind, no_api, no_worker, no_beat, **options):
        if port is not None and not 0 < port < 65536:
            raise CommandError("--port must be between 1 and 65535")
        bind = bind or resolve_bind(port)
        web_workers = env_int("KARBOR_WEB_WORKERS", 2, minimum=1)
        concurrency = env_int("KARBOR_WORKER_CONCURRENCY", 2, minimum=1)
        pool = env_str("KARBOR_WORKER_POOL") or default_worker_pool(settings.CELERY_BROKER_URL)
        if pool not in ("prefork", "threads", "solo"):
            raise CommandError(f"KARBOR_WORKER_POOL must be prefork, threads or solo, not {pool!r}")
        stop_timeout = env_int("KARBOR_STOP_TIMEOUT", 30, minimum=1)
        python = sys.executable
        children: list[Child] = []
        if not no_api:
            children.append(
                Child(
                    "api",
                    [python, "-m", "gunicorn", "karbor_site.wsgi:application", "--bind", bind,
                     "--workers", str(web_workers), "--access-logfile", "-",
                     "--graceful-timeout", str(stop_timeout)],
                    f"gunicorn, {web_workers} workers, listening on {public_url(bind)}/ (bound to {bind})",
                )
            )
        if not no_worker:
            worker = [python, "-m", "celery", "-A", "karbor_site", "worker", "--loglevel", "INFO", "--pool", pool]
            if pool == "solo":
                # A solo worker runs one task at a time in its own main thread: N of them give
                # the same concurrency as a prefork pool of N.
                for index in range(1, concurrency + 1):
                    children.append(
                        Child(
                            "worker",
                            [*worker, "--hostname", f"karbor-worker-{os.getpid()}-{index}@%h"],
                            f"celery worker {index} of {concurrency}, solo pool",
                        )
                    )
            else:
                children.append(
                    Child(
                        "worker",
                        [*worker, "--concurrency", str(concurrency), "--hostname", f"karbor-worker-{os.getpid()}@%h"],
                        f"celery worker, {pool} pool, concurrency {concurrency}",
                    )
                )
        if not no_beat:
            children.append(
                Child(
                    "beat",
                    [python, "-m", "celery", "-A", "karbor_site", "beat", "--loglevel", "INFO",
                     "--scheduler", BEAT_SCHEDULER],
                    "celery beat, database scheduler",
                )
            )
        if not children:
            raise CommandError("Nothing to run: --no-api, --no-worker and --no-beat were all given.")
        self.stdout.write(f"karbor serve: broker {_redact(settings.CELERY_BROKER_URL)}, "
                          f"database {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}, "
                          f"data dir {settings.DATA_DIR}")
        supervisor = Supervisor(children, stop_timeout=stop_timeout, write=self._say)
        code = supervisor.run()
        if code:
            sys.exit(code)

    def _say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()


def _redact(url: str) -> str:
    """A broker URL fit for a log line: the password is replaced."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"
