"""``MySQL::Database``: databases of MariaDB / MySQL servers the operator declares.

Protect
    ``mariadb-dump`` (or ``mysqldump``) ``--single-transaction --routines --triggers --events``
    is streamed into the bank: one consistent InnoDB snapshot, no table locks. The dump names no
    database (no ``CREATE DATABASE`` / ``USE``), so it can be loaded under any name. The saved
    info records the server version, character set, size and the row count of every table,
    counted in the plugin's own consistent snapshot taken right before the dump started (the
    dump tool cannot share its snapshot, so under concurrent writes counts may differ slightly
    from the dump's).

Restore
    Into a new database (restore parameter ``database``) on the original source or a declared
    restore target (parameter ``target``); a database that exists (a restore in place, say) is
    replaced only with ``confirm_overwrite: true``, and only after the dump loaded completely into
    a staging database. The dump streams from the bank into the ``mariadb`` / ``mysql`` client.
    A failed load of a new database drops it again.

Verify
    The dump is read back from the bank (every chunk authenticated); it must end with the
    dump tool's ``-- Dump completed`` footer and create every table recorded at protect time.
"""
from __future__ import annotations

import re
import threading
from typing import Any

import pymysql

from protection.bank import BankError
from providers.constants import MYSQL_DATABASE
from providers.plugins.base import PluginError, ProtectContext, RestoreContext, VerifyContext
from providers.plugins.sqldump import (
    CONNECT_TIMEOUT_SECONDS, DatabaseDumpPlugin, DumpProcess, Server, SourceUnavailable, client_env, feed_tools,
    find_tool, restore_progress, restore_schema_for, staging_name, saved_info_schema_for, servers_config_schema, tool_failure,
)

IDENTIFIER_MAX = 64
FOOTER = b"-- Dump completed"
_CREATE_TABLE = re.compile(rb"CREATE TABLE `((?:[^`]|``)+)`")
_CARRY = 2 * IDENTIFIER_MAX * 4 + 32  # a CREATE TABLE statement's head cut by a chunk boundary


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def connect(server: Server, database: str | None = None):
    """A PyMySQL connection; SourceUnavailable with the server's reason within CONNECT_TIMEOUT_SECONDS."""
    try:
        return pymysql.connect(
            host=server.host, port=server.port, user=server.user, password=server.password() or "",
            database=database, connect_timeout=CONNECT_TIMEOUT_SECONDS, charset="utf8mb4", autocommit=True,
        )
    except pymysql.Error as exc:
        detail = exc.args[1] if len(exc.args) > 1 else str(exc)
        where = f" (database {database!r})" if database else ""
        raise SourceUnavailable(f"cannot connect to MySQL server {server.name!r}{where}: {detail}") from None


def _execute(connection, statement: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement)


def tool_args(server: Server) -> tuple[list[str], dict[str, str]]:
    """Connection arguments of the command-line tools, and their environment (the password only there)."""
    args = [f"--host={server.host}", f"--port={server.port}", f"--user={server.user}",
            "--default-character-set=utf8mb4", "--protocol=TCP"]
    password = server.password()
    return args, client_env({"MYSQL_PWD": password} if password else {})


class MySQLDatabasePlugin(DatabaseDumpPlugin):
    """Protects MariaDB / MySQL databases with mariadb-dump (mysqldump) and the mariadb (mysql) client."""

    resource_type = MYSQL_DATABASE
    engine = "MySQL"
    default_port = 3306
    dump_item = "database.sql"
    system_databases = frozenset({"information_schema", "performance_schema", "mysql", "sys"})
    reserved_databases = system_databases
    config_schema = servers_config_schema(default_port)
    options_schema = {
        "title": "MySQL backup options",
        "description": "What the dump includes when a checkpoint is taken.",
        "type": "object",
        "properties": {
            "exclude_tables": {
                "title": "Excluded tables",
                "description": "Tables of the database left out of the dump (mysqldump --ignore-table).",
                "type": "array",
                "items": {"type": "string", "minLength": 1, "maxLength": IDENTIFIER_MAX},
                "default": [],
            },
        },
        "additionalProperties": False,
    }
    restore_schema = restore_schema_for(
        "MySQL", identifier_max=IDENTIFIER_MAX,
        confirm="It is replaced only after the dump loaded completely into a staging database.",
    )
    saved_info_schema = saved_info_schema_for(
        "MySQL",
        description="What a checkpoint records about a protected database; the dump is SQL text.",
        properties={
            "size_bytes": {"type": "integer", "description": "Data and index bytes (information_schema.TABLES)."},
            "character_set": {"type": "string"},
            "collation": {"type": "string"},
            "views": {"type": "array", "items": {"type": "string"}},
            "sequences": {"type": "array", "items": {"type": "string"}},
            "routines": {"type": "integer"},
            "triggers": {"type": "integer"},
            "events": {"type": "integer"},
        },
        table_item={"name": {"type": "string"}},
    )

    # --- protectable side -------------------------------------------------------------
    def server_databases(self, server: Server) -> list[str]:
        connection = connect(server)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY 1")
                return [row[0] for row in cursor.fetchall()]
        finally:
            connection.close()

    # --- protect ----------------------------------------------------------------------
    def protect(self, context: ProtectContext) -> dict[str, Any]:
        source, database = self.source_of(context.resource, context.project_id)
        excluded = list(context.parameters.get("exclude_tables") or [])
        dump_tool = find_tool("mariadb-dump", "mysqldump")
        connection = connect(source, database)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET SESSION lock_wait_timeout = 60")  # never wait a year on a metadata lock
                cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                info = self._describe(cursor, source, database, excluded)
            counted: dict[str, Any] = {}
            counter = threading.Thread(target=self._count_rows, args=(connection, info["tables"], counted), daemon=True)
            counter.start()
            args, env = tool_args(source)
            cmd = [dump_tool, *args, "--single-transaction", "--routines", "--triggers", "--events", "--hex-blob",
                   "--no-tablespaces", "--max-allowed-packet=1G"]
            cmd += [f"--ignore-table={database}.{table}" for table in excluded]
            cmd += [database]
            dump = DumpProcess(cmd, env)
            estimate = sum(table.pop("bytes") for table in info["tables"])
            try:
                self.store_dump(context, dump, estimate, info)
            finally:
                counter.join()
            if "error" in counted:
                raise PluginError(f"cannot count the rows of {database!r}: {counted['error']}")
        except pymysql.Error as exc:
            raise PluginError(f"MySQL server {source.name!r}: {exc.args[-1] if exc.args else exc}") from None
        finally:
            connection.close()
        return info

    @staticmethod
    def _describe(cursor, source: Server, database: str, excluded: list[str]) -> dict[str, Any]:
        cursor.execute("SELECT VERSION()")
        version = cursor.fetchone()[0]
        cursor.execute(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
            (database,),
        )
        charset, collation = cursor.fetchone()
        cursor.execute(
            "SELECT TABLE_NAME, TABLE_TYPE, COALESCE(DATA_LENGTH, 0), COALESCE(DATA_LENGTH + INDEX_LENGTH, 0) "
            "FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s ORDER BY 1",
            (database,),
        )
        rows = [row for row in cursor.fetchall() if row[0] not in excluded]
        tables = [{"name": name, "rows": None, "bytes": int(data)} for name, kind, data, _ in rows
                  if kind in ("BASE TABLE", "SYSTEM VERSIONED")]
        counts = {}
        for what, query in (
            ("routines", "SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s"),
            ("triggers", "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s"),
            ("events", "SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s"),
        ):
            cursor.execute(query, (database,))
            counts[what] = int(cursor.fetchone()[0])
        return {
            "source": source.name, "database": database, "server_version": version,
            "size_bytes": sum(int(total) for *_, total in rows), "character_set": charset, "collation": collation,
            "exclude_tables": excluded, "tables": tables,
            "views": [name for name, kind, *_ in rows if kind == "VIEW"],
            "sequences": [name for name, kind, *_ in rows if kind == "SEQUENCE"],
            **counts,
        }

    @staticmethod
    def _count_rows(connection, tables: list[dict[str, Any]], result: dict[str, Any]) -> None:
        try:
            with connection.cursor() as cursor:
                for table in tables:
                    cursor.execute(f"SELECT COUNT(*) FROM {quote(table['name'])}")
                    table["rows"] = int(cursor.fetchone()[0])
                cursor.execute("COMMIT")
        except pymysql.Error as exc:
            result["error"] = exc.args[-1] if exc.args else exc

    # --- restore ----------------------------------------------------------------------
    def restore(self, context: RestoreContext) -> dict[str, Any]:
        """Load the dump into ``database``; an existing one is replaced only after a staging copy loaded completely.

        MySQL cannot rename a database, so the dump is loaded twice when replacing: into a staging
        database first (a dump that does not load leaves the existing database untouched), then,
        after the existing database was dropped, into its name. The staging copy is dropped last.
        """
        server, database, in_place = self.restore_plan(context)
        confirm = bool((context.parameters or {}).get("confirm_overwrite"))
        admin = connect(server)
        try:
            with admin.cursor() as cursor:
                cursor.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (database,))
                exists = cursor.fetchone() is not None
            if exists:
                self.check_overwrite(project_id=context.project_id, server=server, database=database,
                                     in_place=in_place, confirm=confirm)
                staging = staging_name(database, IDENTIFIER_MAX)
                self._load(admin, server, staging, context, drop_on_failure=True)
                _execute(admin, f"DROP DATABASE {quote(database)}")
                try:
                    fed = self._load(admin, server, database, context, drop_on_failure=False)
                except PluginError as exc:
                    raise PluginError(f"{exc} (the checkpoint's data is complete in database {staging!r})") from None
                _execute(admin, f"DROP DATABASE {quote(staging)}")
            else:
                fed = self._load(admin, server, database, context, drop_on_failure=True)
        except pymysql.Error as exc:
            raise PluginError(f"MySQL server {server.name!r}: {exc.args[-1] if exc.args else exc}") from None
        finally:
            admin.close()
        return self.restored(context, server, database, in_place=in_place, replaced=exists, fed=fed)

    def _load(self, admin, server: Server, database: str, context: RestoreContext, *, drop_on_failure: bool) -> int:
        """Create ``database`` and stream the dump into it through the client; returns the bytes fed."""
        saved = context.saved_info or {}
        client = find_tool("mariadb", "mysql")
        create = f"CREATE DATABASE {quote(database)}"
        for clause, key in (("CHARACTER SET", "character_set"), ("COLLATE", "collation")):
            if re.fullmatch(r"\w+", str(saved.get(key) or "")):
                create += f" {clause} {saved[key]}"
        _execute(admin, create)
        args, env = tool_args(server)
        # (mariadb-dump has no connect timeout option; the plugin's own connection checked the server just before.)
        cmd = [client, *args, f"--connect-timeout={CONNECT_TIMEOUT_SECONDS}", "--batch", "--max-allowed-packet=1G",
               f"--database={database}"]
        try:
            (result,), fed = feed_tools(
                [cmd], env, self.dump_chunks(context),
                on_bytes=restore_progress(context, int(saved.get("dump_bytes") or 0)),
            )
            if result.returncode != 0:
                raise PluginError(tool_failure(client, result.returncode, result.stderr))
        except BaseException:
            if drop_on_failure:
                _execute(admin, f"DROP DATABASE IF EXISTS {quote(database)}")
            raise
        return fed

    # --- verify -----------------------------------------------------------------------
    def verify(self, context: VerifyContext) -> dict[str, Any]:
        saved = context.saved_info or {}
        expected_bytes = int(saved.get("dump_bytes") or 0)
        report = restore_progress(context, expected_bytes)
        found: set[str] = set()
        carry = b""
        fed = 0
        try:
            for chunk in self.dump_chunks(context):
                window = carry + chunk
                found.update(m.group(1).replace(b"``", b"`").decode("utf-8", "replace") for m in _CREATE_TABLE.finditer(window))
                carry = window[-_CARRY:]
                fed += len(chunk)
                report(fed)
        except BankError as exc:  # a damaged chunk surfaces while iterating
            raise PluginError(f"cannot read the dump from the bank: {exc}") from None
        if fed != expected_bytes:
            raise PluginError(f"the dump holds {fed} bytes, the checkpoint recorded {expected_bytes}")
        if FOOTER not in carry[-256:]:
            raise PluginError("the dump is incomplete: it does not end with the dump tool's '-- Dump completed' line")
        missing = [table["name"] for table in saved.get("tables") or [] if table["name"] not in found]
        if missing:
            raise PluginError(f"the dump creates no table {', '.join(missing[:5])}" + (" …" if len(missing) > 5 else ""))
        return {"bytes": fed, "tables": len(saved.get("tables") or []), "created_tables": len(found)}
