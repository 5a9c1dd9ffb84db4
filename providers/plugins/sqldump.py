"""What the PostgreSQL and MySQL plugins share: declared servers, instance ids, piping dumps.

Operators declare *sources* (servers whose databases projects may protect) and *restore
targets* (servers a restore may write into) in the provider file. A server entry names the
environment variable that holds its password (``password_env``), never the password, and the
projects that may use it; an entry without ``projects`` is visible to no project.

Dumps are streamed: the dump tool's stdout goes straight into the bank writer, and a restore
streams the bank item straight into the client's stdin, so a database is never staged whole on
local disk or in memory. The password reaches the child process only through its environment.
"""
from __future__ import annotations

import abc
import logging
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured

from karbor_site.errors import NotFound, ServiceUnavailable
from protection.bank import BankError, Progress
from providers.plugins.base import Instance, PluginError, ProtectablePlugin, ProtectContext, RestoreContext, VerifyContext

log = logging.getLogger(__name__)

# Fixed namespace: instance ids must not change across restarts, hosts or releases.
INSTANCE_NAMESPACE = uuid.UUID("5d1c0e2a-7b4f-5c39-9a0e-6b6172626f72")
ALL_PROJECTS = "*"
CONNECT_TIMEOUT_SECONDS = 5
STDERR_KEPT_BYTES = 16 * 1024


class SourceUnavailable(PluginError, ServiceUnavailable):
    """A declared server cannot be reached or refuses the operator's credentials.

    A PluginError for the flows (the resource fails with this reason) and a 503 for the API.
    """

    def __init__(self, message: str) -> None:
        ServiceUnavailable.__init__(self, message)


def server_entry_schema(*, with_databases: bool, default_port: int) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "name": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[^/\x00]+$"},
        "host": {"type": "string", "minLength": 1},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": default_port},
        "user": {"type": "string", "minLength": 1},
        "password_env": {
            "type": "string",
            "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$",
            "description": "Name of the environment variable holding the password (never the password itself).",
        },
        "projects": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "description": 'Project ids allowed to use this server, or ["*"]. Omitted: no project (deny by default).',
        },
    }
    if with_databases:
        properties["databases"] = {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 64},
            "minItems": 1,
            "uniqueItems": True,
            "description": "Databases offered; omitted: every user database of the server (listed on each request).",
        }
    return {
        "type": "object",
        "properties": properties,
        "required": ["name", "host", "user"],
        "additionalProperties": False,
    }


def servers_config_schema(default_port: int) -> dict[str, Any]:
    """The operator's options of a database plugin: ``sources`` and ``restore_targets``."""
    return {
        "type": "object",
        "properties": {
            "sources": {"type": "array", "items": server_entry_schema(with_databases=True, default_port=default_port)},
            "restore_targets": {
                "type": "array",
                "items": server_entry_schema(with_databases=False, default_port=default_port),
            },
        },
        "additionalProperties": False,
    }


def restore_schema_for(engine: str, *, identifier_max: int, confirm: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The restore parameters every database plugin takes (``database``, ``target``, ``confirm_overwrite``)."""
    return {
        "title": f"{engine} restore options",
        "description": "Where a database is restored. Without parameters it goes back to its own name on its own "
        "server, which exists, so confirm_overwrite is needed; name a new database to keep the existing one.",
        "type": "object",
        "properties": {
            "database": {
                "title": "Database name",
                "description": "Name of the database to restore into; default: the protected database's name.",
                "type": "string", "minLength": 1, "maxLength": identifier_max,
            },
            "target": {
                "title": "Target server",
                "description": "Name of a restore target (or source) the operator declared; default: the original server.",
                "type": "string", "minLength": 1,
            },
            "confirm_overwrite": {
                "title": "Replace an existing database",
                "description": f"Required when the database exists (for example a restore in place). {confirm}",
                "type": "boolean", "default": False,
            },
            **(extra or {}),
        },
        "additionalProperties": False,
    }


def saved_info_schema_for(engine: str, *, description: str, properties: dict[str, Any], table_item: dict[str, Any]) -> dict[str, Any]:
    """The saved info every database plugin records, plus the engine's own ``properties``."""
    return {
        "title": f"Saved {engine} database information",
        "description": description,
        "type": "object",
        "properties": {
            "source": {"type": "string", "description": "Declared source the database was read from."},
            "database": {"type": "string"},
            "server_version": {"type": "string"},
            **properties,
            "tables": {
                "type": "array",
                "description": "Every table dumped, with its row count.",
                "items": {"type": "object", "properties": {**table_item, "rows": {"type": "integer"}}},
            },
            "dump_item": {"type": "string", "description": "Bank item holding the dump."},
            "dump_bytes": {"type": "integer"},
            "new_bytes": {"type": "integer", "description": "Bytes of dump chunks the bank did not hold before."},
        },
        "required": ["source", "database", "tables", "dump_item", "dump_bytes"],
        "additionalProperties": True,
    }


@dataclass(frozen=True)
class Server:
    """A database server the operator declared (a source or a restore target)."""

    name: str
    host: str
    port: int
    user: str
    password_env: str | None
    projects: tuple[str, ...]
    databases: tuple[str, ...] | None = None

    def visible_to(self, project_id: str) -> bool:
        return ALL_PROJECTS in self.projects or project_id in self.projects

    def password(self) -> str | None:
        """The password from the environment; SourceUnavailable naming the variable when it is not set."""
        if not self.password_env:
            return None
        value = os.environ.get(self.password_env)
        if value is None:
            raise SourceUnavailable(
                f"the password of server {self.name!r} is not available: environment variable {self.password_env} is not set"
            )
        return value


def _servers(raw_entries: list[dict[str, Any]], field: str, default_port: int) -> tuple[Server, ...]:
    servers = []
    for raw in raw_entries:
        databases = raw.get("databases")
        servers.append(
            Server(
                name=raw["name"],
                host=raw["host"],
                port=int(raw.get("port", default_port)),
                user=raw["user"],
                password_env=raw.get("password_env"),
                projects=tuple(raw.get("projects", ())),
                databases=tuple(databases) if databases else None,
            )
        )
    names = [server.name for server in servers]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ImproperlyConfigured(f"options.{field}: duplicate name {duplicates[0]!r}")
    return tuple(servers)


class DatabaseDumpPlugin(ProtectablePlugin):
    """Base of the plugins that protect one database of a declared server through a dump tool.

    Subclasses set ``default_port``, ``dump_item`` and ``engine`` and implement the
    server-specific parts (listing, connecting, dump and restore commands).
    """

    default_port: ClassVar[int] = 0
    engine: ClassVar[str] = ""
    dump_item: ClassVar[str] = "dump"
    system_databases: ClassVar[frozenset[str]] = frozenset()
    # Never restored into, even with confirm_overwrite.
    reserved_databases: ClassVar[frozenset[str]] = frozenset()

    def configure(self, options: dict[str, Any]) -> None:
        self.sources = _servers(options.get("sources", []), "sources", self.default_port)
        self.restore_targets = _servers(options.get("restore_targets", []), "restore_targets", self.default_port)

    # --- server specifics -------------------------------------------------------------
    @abc.abstractmethod
    def server_databases(self, server: Server) -> list[str]:
        """Every database of ``server``; raises SourceUnavailable with the reason."""

    # --- protectable side -------------------------------------------------------------
    def instance_id(self, source: Server, database: str) -> str:
        return str(uuid.uuid5(INSTANCE_NAMESPACE, f"{self.resource_type}/{source.name}/{database}"))

    def _instance(self, source: Server, database: str) -> Instance:
        return Instance(
            id=self.instance_id(source, database),
            type=self.resource_type,
            name=f"{source.name}/{database}",
            extra_info={"source": source.name, "database": database, "engine": self.engine},
        )

    def _source_instances(self, source: Server) -> list[Instance]:
        if source.databases is not None:
            return [self._instance(source, db) for db in source.databases]
        return [self._instance(source, db) for db in self.server_databases(source) if db not in self.system_databases]

    def list_instances(self, *, project_id: str, parameters: dict[str, Any] | None = None) -> list[Instance]:
        found: list[Instance] = []
        for source in self.sources:
            if not source.visible_to(project_id):
                continue
            try:
                found.extend(self._source_instances(source))
            except SourceUnavailable as exc:
                # A listing must not fail because one server is down; show/protect report the reason.
                log.warning("%s source %r not listed: %s", self.engine, source.name, exc)
        return found

    def show_instance(self, *, project_id: str, instance_id: str, parameters: dict[str, Any] | None = None) -> Instance:
        unavailable: SourceUnavailable | None = None
        visible = [source for source in self.sources if source.visible_to(project_id)]
        # Declared database lists answer without a connection; whole servers are asked last.
        for source in sorted(visible, key=lambda s: s.databases is None):
            if source.databases is not None:
                for database in source.databases:
                    if self.instance_id(source, database) == instance_id:
                        return self._instance(source, database)
                continue
            try:
                for instance in self._source_instances(source):
                    if instance.id == instance_id:
                        return instance
            except SourceUnavailable as exc:
                unavailable = exc
        if unavailable is not None:
            raise unavailable
        raise NotFound(f"{self.resource_type} {instance_id} could not be found.")

    def source_of(self, resource: Instance, project_id: str) -> tuple[Server, str]:
        """The declared source and database behind ``resource``, re-resolved from its id."""
        instance = self.show_instance(project_id=project_id, instance_id=resource.id)
        extra = instance.extra_info or {}
        source = next(s for s in self.sources if s.name == extra["source"])
        return source, extra["database"]

    # --- restore side -----------------------------------------------------------------
    def check_restore_target(
        self, *, project_id: str, target: str | None, resources: list[Instance], saved_infos: dict[str, dict]
    ) -> None:
        """A restore's ``restore_target`` may name one of this plugin's restore targets.

        An absolute path is meant for directories of the same checkpoint and is ignored here.
        """
        if target and not target.startswith("/"):
            self.restore_server(project_id=project_id, name=target, saved_info={}, resource=None)

    def check_restore_parameters(self, *, project_id: str, resource: Instance, parameters: dict[str, Any]) -> None:
        """A restore parameter ``target`` must name a server declared for the project (asked before it starts)."""
        if parameters.get("target"):
            self.restore_server(project_id=project_id, name=parameters["target"], saved_info={}, resource=resource)

    def restore_server(
        self, *, project_id: str, name: str | None, saved_info: dict[str, Any], resource: Instance | None
    ) -> Server:
        """The server a restore writes into: a declared restore target, or the resource's own source."""
        if name:
            for server in self.restore_targets:
                if server.name == name and server.visible_to(project_id):
                    return server
            for server in self.sources:
                if server.name == name and server.visible_to(project_id):
                    return server
            allowed = [s.name for s in (*self.restore_targets, *self.sources) if s.visible_to(project_id)]
            raise PluginError(
                f"restore target {name!r} is not a declared {self.engine} server of this project; "
                f"declared: {', '.join(allowed) or 'none'}"
            )
        source_name = saved_info.get("source") or ((resource.extra_info or {}).get("source") if resource else None)
        for server in self.sources:
            if server.name == source_name and server.visible_to(project_id):
                return server
        raise PluginError(
            f"the original {self.engine} source {source_name!r} is no longer declared for this project; "
            "set the restore parameter target to a declared restore target"
        )

    # --- shared steps of protect / restore / verify ---------------------------------------
    def store_dump(self, context: ProtectContext, dump: DumpProcess, estimate: int, info: dict[str, Any]) -> None:
        """Stream the dump tool's output into the writer; fills ``info`` with the item, its size and new bytes."""
        writer = context.writer
        new_before = writer.stats.new_bytes

        def progress(p: Progress) -> None:
            if context.on_progress is not None:
                context.on_progress(Progress(p.bytes_done, max(estimate, p.bytes_done), p.items_done, 1))

        try:
            item = writer.add_stream(
                f"{context.prefix}/{self.dump_item}", dump.stdout, meta={"engine": self.engine, "database": info["database"]},
                on_progress=progress,
            )
        except BaseException:
            dump.kill()
            raise
        dump.finish()
        info["dump_item"] = item.path
        info["dump_bytes"] = item.size
        info["new_bytes"] = writer.stats.new_bytes - new_before

    def dump_chunks(self, context: RestoreContext | VerifyContext) -> Iterator[bytes]:
        """The stored dump of the resource, as authenticated chunks; PluginError when absent."""
        name = (context.saved_info or {}).get("dump_item") or f"{context.prefix}/{self.dump_item}"
        try:
            return context.bank.open_item(context.checkpoint_id, name)
        except BankError as exc:
            raise PluginError(f"the checkpoint holds no readable dump for this database: {exc}") from None

    def check_overwrite(self, *, project_id: str, server: Server, database: str, in_place: bool, confirm: bool) -> None:
        """An existing database may be replaced only with confirm_overwrite, and only if it is one of the project's.

        "The project's" means a source visible to the project, on the same host and port, offers it: a
        restore target shared with other projects must not let one project replace another's database.
        """
        if not confirm:
            what = "restoring in place replaces" if in_place else "the restore would replace"
            raise PluginError(
                f"database {database!r} exists on {server.name!r} and {what} it; set confirm_overwrite "
                "to true, or name a new database with the parameter database"
            )
        for source in self.sources:
            if (source.host, source.port) == (server.host, server.port) and source.visible_to(project_id):
                if source.databases is None or database in source.databases:
                    return
        raise PluginError(
            f"database {database!r} exists on {server.name!r} and is not a database of this project; "
            "name a new database with the parameter database"
        )

    @staticmethod
    def restored(context: RestoreContext, server: Server, database: str, *, in_place: bool, replaced: bool,
                 fed: int) -> dict[str, Any]:
        if context.on_progress is not None:
            context.on_progress(Progress(fed, fed, 1, 1))
        return {"target": server.name, "database": database, "in_place": in_place, "replaced": replaced, "bytes": fed}

    def restore_plan(self, context: RestoreContext) -> tuple[Server, str, bool]:
        """(server, database name, whether that database is the protected one on its own server)."""
        saved = context.saved_info or {}
        params = context.parameters or {}
        target_name = params.get("target")
        if not target_name and context.target and not context.target.startswith("/"):
            target_name = context.target
        server = self.restore_server(
            project_id=context.project_id, name=target_name, saved_info=saved, resource=context.resource
        )
        original_db = saved.get("database") or (context.resource.extra_info or {}).get("database")
        database = params.get("database") or original_db
        if not database:
            raise PluginError("the checkpoint does not record the database name; set the restore parameter database")
        if database in self.reserved_databases:
            raise PluginError(f"{database!r} is a system database; name another database with the parameter database")
        in_place = server.name == saved.get("source") and database == original_db and server in self.sources
        return server, database, in_place


def staging_name(database: str, limit: int, kind: str = "restore") -> str:
    """A fresh database name next to ``database`` (within the server's identifier ``limit``)."""
    suffix = f"_karbor_{kind}_{uuid.uuid4().hex[:8]}"
    return database[: limit - len(suffix)] + suffix


def client_env(extra: dict[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PG", "MYSQL"))}
    env.update(extra)
    env.setdefault("LC_ALL", "C.UTF-8")
    return env


def find_tool(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise PluginError(f"none of {', '.join(names)} is installed on this worker")


class _StderrTail:
    """Reads a child's stderr in a thread, keeping only its last bytes (a chatty tool cannot fill a pipe)."""

    def __init__(self, stream) -> None:
        self.data = b""
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for block in iter(lambda: stream.read(8192), b""):
            self.data = (self.data + block)[-STDERR_KEPT_BYTES:]

    def text(self) -> str:
        self._thread.join(timeout=10)
        return self.data.decode("utf-8", "replace").strip()


def tool_failure(tool: str, returncode: int, stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "fatal" in line.lower()] or lines
    detail = "; ".join(errors[-3:]) or "no message"
    return f"{os.path.basename(tool)} failed (exit status {returncode}): {detail}"


class DumpProcess:
    """A dump tool whose stdout is read by the bank writer; ``finish`` checks how it ended."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.cmd = cmd
        try:
            self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
        except OSError as exc:
            raise PluginError(f"cannot start {os.path.basename(cmd[0])}: {exc}") from exc
        self.stderr = _StderrTail(self.process.stderr)

    @property
    def stdout(self):
        return self.process.stdout

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def finish(self) -> str:
        """Wait for the tool; PluginError with its message on a non-zero exit. Returns its stderr."""
        self.process.stdout.close()
        returncode = self.process.wait()
        message = self.stderr.text()
        if returncode != 0:
            raise PluginError(tool_failure(self.cmd[0], returncode, message))
        return message


@dataclass
class FedTool:
    """How one tool that was fed a stream ended."""

    returncode: int
    stderr: str
    stdout: bytes


def feed_tools(
    cmds: list[list[str]],
    env: dict[str, str],
    chunks: Iterable[bytes],
    *,
    on_bytes: Callable[[int], None] | None = None,
    capture_stdout: bool = False,
    read_all: bool = False,
) -> tuple[list[FedTool], int]:
    """Feed the same ``chunks`` to the stdin of every command; returns how each ended and the bytes read.

    A tool that exits early (it refused the input, or read all it wanted) stops getting data; when
    every tool has stopped the feed ends, unless ``read_all`` (verify: every chunk must still be
    fetched and authenticated). A bank error while reading kills the tools and is a PluginError.
    """
    processes: list[subprocess.Popen] = []
    try:
        for cmd in cmds:
            processes.append(
                subprocess.Popen(
                    cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                    stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
                )
            )
    except OSError as exc:
        for process in processes:
            process.kill()
            process.wait()
        raise PluginError(f"cannot start {os.path.basename(cmds[len(processes)][0])}: {exc}") from exc
    errors = [_StderrTail(process.stderr) for process in processes]
    outputs = [_OutputReader(process.stdout) if capture_stdout else None for process in processes]
    open_inputs = list(processes)
    fed = 0
    try:
        for chunk in chunks:
            for process in list(open_inputs):
                try:
                    process.stdin.write(chunk)
                except BrokenPipeError:
                    open_inputs.remove(process)
            fed += len(chunk)
            if on_bytes is not None:
                on_bytes(fed)
            if not open_inputs and not read_all:
                break
        for process in open_inputs:
            try:
                process.stdin.close()
            except BrokenPipeError:
                pass
    except BaseException as exc:
        for process in processes:
            process.kill()
            process.wait()
        if isinstance(exc, BankError):
            raise PluginError(f"cannot read the dump from the bank: {exc}") from None
        raise
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # releases the bank's reader lease when the feed stopped early
    results = []
    for process, error, output in zip(processes, errors, outputs):
        returncode = process.wait()
        results.append(FedTool(returncode, error.text(), output.result() if output else b""))
    return results, fed


class _OutputReader:
    """Collects a tool's (small) stdout in a thread so neither side blocks on a full pipe."""

    def __init__(self, stream) -> None:
        self._parts: list[bytes] = []
        self._thread = threading.Thread(target=lambda: self._parts.extend(iter(lambda: stream.read(65536), b"")), daemon=True)
        self._thread.start()

    def result(self) -> bytes:
        self._thread.join()
        return b"".join(self._parts)


def restore_progress(context, total: int) -> Callable[[int], None]:
    def report(done: int) -> None:
        if context.on_progress is not None:
            context.on_progress(Progress(done, max(total, done), 0, 1))

    return report
