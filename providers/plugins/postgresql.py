"""``PostgreSQL::Database``: databases of PostgreSQL servers the operator declares.

Protect
    ``pg_dump -Fc -Z0`` (custom format, uncompressed) is streamed into the bank. It runs on a
    snapshot exported by the plugin's own repeatable-read transaction (``--snapshot``), so the
    dump and the row counts recorded in the saved info see the same data. ``-Z0`` because the
    bank compresses every chunk with zstd anyway, and compressed dump output would change
    entirely after any change and defeat deduplication: an unchanged database stores almost
    nothing new in the next checkpoint (see ``bench/db_bench.py``).

Restore
    Into a new database (restore parameter ``database``) on the original source or on a declared
    restore target (parameter ``target``), or over an existing database only with
    ``confirm_overwrite: true``. The dump is streamed from the bank into
    ``pg_restore --single-transaction`` writing into a staging database; only when it succeeded
    is the staging database renamed to the wanted name (an existing one is dropped at that
    moment), so a failed restore leaves the existing database untouched.

Verify
    The dump is read back from the bank (every chunk authenticated) into ``pg_restore --list``
    (the archive's table of contents must list the data of every table recorded at protect
    time) and into ``pg_restore -f /dev/null`` (the whole archive must parse).
"""
from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

import psycopg2
from psycopg2 import sql

from protection.bank import Progress
from providers.constants import POSTGRESQL_DATABASE
from providers.plugins.base import PluginError, ProtectContext, RestoreContext, VerifyContext
from providers.plugins.sqldump import (
    CONNECT_TIMEOUT_SECONDS, DatabaseDumpPlugin, DumpProcess, Server, SourceUnavailable, client_env, feed_tools,
    find_tool, restore_progress, restore_schema_for, staging_name, saved_info_schema_for, servers_config_schema, tool_failure,
)

log = logging.getLogger(__name__)

MAINTENANCE_DB = "postgres"
IDENTIFIER_MAX = 63


def _reason(exc: Exception) -> str:
    """The server's own words (``FATAL: password authentication failed …``) without the connection preamble."""
    text = str(exc).strip()
    for marker in ("FATAL:", "ERROR:"):
        if marker in text:
            return text[text.index(marker):].replace("  ", " ").splitlines()[0]
    # Tenants read this reason: the declared source's name is shown instead of the host.
    text = re.sub(r'^connection to server at "[^"]*"(?: \([^)]*\))?, port \d+ failed: ', "", text)
    return text.splitlines()[0] if text else exc.__class__.__name__


def connect(server: Server, database: str, *, autocommit: bool = False):
    """A psycopg2 connection; SourceUnavailable with the server's reason within CONNECT_TIMEOUT_SECONDS."""
    try:
        connection = psycopg2.connect(
            host=server.host, port=server.port, user=server.user, password=server.password() or None,
            dbname=database, connect_timeout=CONNECT_TIMEOUT_SECONDS, application_name="karbor",
        )
    except psycopg2.Error as exc:
        raise SourceUnavailable(f"cannot connect to PostgreSQL server {server.name!r} (database {database!r}): {_reason(exc)}") from None
    connection.autocommit = autocommit
    return connection


def tool_env(server: Server, database: str) -> dict[str, str]:
    env = {
        "PGHOST": server.host, "PGPORT": str(server.port), "PGUSER": server.user, "PGDATABASE": database,
        "PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT_SECONDS), "PGAPPNAME": "karbor",
    }
    password = server.password()
    if password:
        env["PGPASSWORD"] = password
    return client_env(env)


_TABLES = """
SELECT n.nspname, c.relname, pg_table_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
  AND (%(schemas)s::text[] IS NULL OR n.nspname = ANY(%(schemas)s::text[]))
ORDER BY 1, 2
"""
# Roles the dump refers to: the database owner, owners of objects outside the system schemas, and grantees.
_ROLES = """
WITH user_ns AS (SELECT oid FROM pg_namespace WHERE nspname <> 'information_schema' AND nspname NOT LIKE 'pg\\_%%')
SELECT rolname FROM pg_roles WHERE oid IN (
    SELECT datdba FROM pg_database WHERE datname = current_database()
    UNION SELECT nspowner FROM pg_namespace WHERE oid IN (SELECT oid FROM user_ns)
    UNION SELECT relowner FROM pg_class WHERE relnamespace IN (SELECT oid FROM user_ns)
    UNION SELECT proowner FROM pg_proc WHERE pronamespace IN (SELECT oid FROM user_ns)
    UNION SELECT typowner FROM pg_type WHERE typnamespace IN (SELECT oid FROM user_ns)
    UNION SELECT (aclexplode(relacl)).grantee FROM pg_class WHERE relacl IS NOT NULL AND relnamespace IN (SELECT oid FROM user_ns)
    UNION SELECT (aclexplode(nspacl)).grantee FROM pg_namespace WHERE nspacl IS NOT NULL AND oid IN (SELECT oid FROM user_ns)
) ORDER BY 1
"""


class PostgreSQLDatabasePlugin(DatabaseDumpPlugin):
    """Protects PostgreSQL databases with pg_dump / pg_restore."""

    resource_type = POSTGRESQL_DATABASE
    engine = "PostgreSQL"
    default_port = 5432
    dump_item = "database.dump"
    system_databases = frozenset({"template0", "template1"})
    reserved_databases = frozenset({"postgres", "template0", "template1"})
    options_schema = {
        "title": "PostgreSQL backup options",
        "description": "What pg_dump includes when a checkpoint is taken.",
        "type": "object",
        "properties": {
            "schemas": {
                "title": "Schemas",
                "description": "Only these schemas (pg_dump --schema); default: the whole database.",
                "type": "array",
                "items": {"type": "string", "minLength": 1, "maxLength": IDENTIFIER_MAX},
                "default": [],
            },
        },
        "additionalProperties": False,
    }
    restore_schema = restore_schema_for(
        "PostgreSQL", identifier_max=IDENTIFIER_MAX,
        confirm="It is replaced only after the whole dump was restored into a staging database.",
        extra={
            "no_owner": {
                "title": "Skip ownership and privileges",
                "description": "Restore without the original owners and grants (pg_restore --no-owner --no-privileges), "
                "for a server that lacks the original roles.",
                "type": "boolean", "default": False,
            },
        },
    )
    saved_info_schema = saved_info_schema_for(
        "PostgreSQL",
        description="What a checkpoint records about a protected database, read in the dump's own snapshot; the dump "
        "is a pg_dump custom-format archive.",
        properties={
            "size_bytes": {"type": "integer", "description": "pg_database_size at protect time."},
            "encoding": {"type": "string"},
            "owner": {"type": "string", "description": "Owner of the database (given back on restore unless no_owner)."},
            "lc_collate": {"type": "string"},
            "lc_ctype": {"type": "string"},
            "roles": {"type": "array", "items": {"type": "string"}, "description": "Roles owning objects or granted rights."},
            "extensions": {
                "type": "array",
                "items": {"type": "object", "properties": {"name": {"type": "string"}, "version": {"type": "string"}}},
            },
        },
        table_item={"schema": {"type": "string"}, "name": {"type": "string"}},
    )
    config_schema = servers_config_schema(default_port)

    # --- protectable side -------------------------------------------------------------
    def server_databases(self, server: Server) -> list[str]:
        connection = connect(server, MAINTENANCE_DB)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY 1")
                return [row[0] for row in cursor.fetchall()]
        finally:
            connection.close()

    # --- protect ----------------------------------------------------------------------
    def protect(self, context: ProtectContext) -> dict[str, Any]:
        source, database = self.source_of(context.resource, context.project_id)
        schemas = list(context.parameters.get("schemas") or [])
        pg_dump = find_tool("pg_dump")
        connection = connect(source, database)
        try:
            connection.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with connection.cursor() as cursor:
                # A table locked by someone else must fail the count like it fails pg_dump, not hang it.
                cursor.execute("SET LOCAL lock_timeout = '60s'")
                cursor.execute("SELECT pg_export_snapshot()")
                snapshot = cursor.fetchone()[0]
                info = self._describe(cursor, source, database, schemas)
            cmd = [pg_dump, "--format=custom", "--compress=0", "--no-password", f"--snapshot={snapshot}",
                   "--lock-wait-timeout=60000"]
            cmd += [f"--schema={schema}" for schema in schemas]
            dump = DumpProcess(cmd, tool_env(source, database))
            # Row counts run in the exported snapshot while the dump streams, on this connection only.
            counted: dict[str, Any] = {}
            counter = threading.Thread(target=self._count_rows, args=(connection, info["tables"], counted), daemon=True)
            counter.start()
            estimate = sum(table.pop("bytes") for table in info["tables"])
            try:
                self.store_dump(context, dump, estimate, info)
            except BaseException:
                connection.cancel()
                raise
            finally:
                counter.join()
            if "error" in counted:
                raise PluginError(f"cannot count the rows of {database!r}: {_reason(counted['error'])}")
        finally:
            connection.close()
        return info

    def _describe(self, cursor, source: Server, database: str, schemas: list[str]) -> dict[str, Any]:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
        cursor.execute(
            "SELECT pg_database_size(current_database()), pg_encoding_to_char(encoding), datcollate, datctype, "
            "pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        )
        size, encoding, collate, ctype, owner = cursor.fetchone()
        cursor.execute(_ROLES)
        roles = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT extname, extversion FROM pg_extension ORDER BY 1")
        extensions = [{"name": name, "version": version_} for name, version_ in cursor.fetchall()]
        cursor.execute(_TABLES, {"schemas": schemas or None})
        tables = [{"schema": schema, "name": name, "rows": None, "bytes": nbytes} for schema, name, nbytes in cursor.fetchall()]
        return {
            "source": source.name, "database": database, "server_version": version, "size_bytes": size,
            "encoding": encoding, "lc_collate": collate, "lc_ctype": ctype, "owner": owner, "roles": roles,
            "extensions": extensions, "schemas": schemas, "tables": tables,
        }

    @staticmethod
    def _count_rows(connection, tables: list[dict[str, Any]], result: dict[str, Any]) -> None:
        try:
            with connection.cursor() as cursor:
                for table in tables:
                    cursor.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(
                        sql.Identifier(table["schema"]), sql.Identifier(table["name"])))
                    table["rows"] = cursor.fetchone()[0]
        except psycopg2.Error as exc:
            result["error"] = exc

    # --- restore ----------------------------------------------------------------------
    def restore(self, context: RestoreContext) -> dict[str, Any]:
        saved = context.saved_info or {}
        server, database, in_place = self.restore_plan(context)
        params = context.parameters or {}
        confirm = bool(params.get("confirm_overwrite"))
        no_owner = bool(params.get("no_owner"))
        pg_restore = find_tool("pg_restore")
        admin = connect(server, MAINTENANCE_DB, autocommit=True)
        staging = staging_name(database, IDENTIFIER_MAX)
        try:
            with admin.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                exists = cursor.fetchone() is not None
                if exists:
                    self.check_overwrite(project_id=context.project_id, server=server, database=database,
                                         in_place=in_place, confirm=confirm)
                if not no_owner:
                    cursor.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(saved.get("roles") or []),))
                    present = {row[0] for row in cursor.fetchall()}
                    missing = [role for role in saved.get("roles") or [] if role not in present]
                    if missing:
                        raise PluginError(
                            f"roles {', '.join(missing)} do not exist on {server.name!r}; create them, or restore with "
                            "no_owner: true"
                        )
                cursor.execute(_create_database_sql(staging, saved, with_owner=not no_owner))
            cmd = [pg_restore, "--single-transaction", "--exit-on-error", "--no-password", f"--dbname=dbname={_conninfo_value(staging)}"]
            if no_owner:
                cmd += ["--no-owner", "--no-privileges"]
            env = tool_env(server, staging)
            env.pop("PGDATABASE")
            try:
                if "public" in (saved.get("schemas") or []):
                    _drop_public_schema(server, staging)
                (result,), fed = feed_tools(
                    [cmd], env, self.dump_chunks(context),
                    on_bytes=restore_progress(context, int(saved.get("dump_bytes") or 0)),
                )
                if result.returncode != 0:
                    raise PluginError(tool_failure(pg_restore, result.returncode, result.stderr))
                self._swap(admin, staging, database, replace=exists)
            except BaseException:
                _drop(admin, staging)
                raise
        except psycopg2.Error as exc:
            raise PluginError(f"PostgreSQL server {server.name!r}: {_reason(exc)}") from None
        finally:
            admin.close()
        return self.restored(context, server, database, in_place=in_place, replaced=exists, fed=fed)

    @staticmethod
    def _swap(admin, staging: str, database: str, *, replace: bool) -> None:
        """Give the restored staging database its name; the replaced one is dropped only then."""
        with admin.cursor() as cursor:
            if not replace:
                cursor.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(staging), sql.Identifier(database)))
                return
            retired = staging_name(database, IDENTIFIER_MAX, "old")
            for attempt in range(5):
                _terminate(cursor, database)
                try:
                    cursor.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(database), sql.Identifier(retired)))
                    break
                except psycopg2.errors.ObjectInUse:
                    if attempt == 4:
                        raise
                    time.sleep(0.2)
            try:
                cursor.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(staging), sql.Identifier(database)))
            except psycopg2.Error:
                cursor.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(retired), sql.Identifier(database)))
                raise
        _drop(admin, retired)

    # --- verify -----------------------------------------------------------------------
    def verify(self, context: VerifyContext) -> dict[str, Any]:
        saved = context.saved_info or {}
        pg_restore = find_tool("pg_restore")
        expected_bytes = int(saved.get("dump_bytes") or 0)
        (toc, full), fed = feed_tools(
            [[pg_restore, "--list"], [pg_restore, "--file=/dev/null"]],
            client_env({}),
            self.dump_chunks(context),
            on_bytes=restore_progress(context, expected_bytes),
            capture_stdout=True,
            read_all=True,
        )
        if fed != expected_bytes:
            raise PluginError(f"the dump holds {fed} bytes, the checkpoint recorded {expected_bytes}")
        for result in (toc, full):
            if result.returncode != 0:
                raise PluginError("the dump is not a valid pg_dump archive: "
                                  + tool_failure(pg_restore, result.returncode, result.stderr))
        listing = toc.stdout.decode("utf-8", "replace")
        missing = [
            f"{table['schema']}.{table['name']}" for table in saved.get("tables") or []
            if f" TABLE DATA {table['schema']} {table['name']} " not in listing
        ]
        if missing:
            raise PluginError(f"the dump's table of contents lacks the data of {len(missing)} table(s): {', '.join(missing[:5])}")
        entries = [line for line in listing.splitlines() if line and not line.startswith(";")]
        if context.on_progress is not None:
            context.on_progress(Progress(fed, fed, 1, 1))
        return {"bytes": fed, "tables": len(saved.get("tables") or []), "toc_entries": len(entries)}


def _create_database_sql(name: str, saved: dict[str, Any], *, with_owner: bool):
    statement = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
    if with_owner and saved.get("owner"):
        statement += sql.SQL(" OWNER {}").format(sql.Identifier(saved["owner"]))
    for option, key in (("ENCODING", "encoding"), ("LC_COLLATE", "lc_collate"), ("LC_CTYPE", "lc_ctype")):
        if saved.get(key):
            statement += sql.SQL(" {} {}").format(sql.SQL(option), sql.Literal(saved[key]))
    return statement


def _conninfo_value(value: str) -> str:
    """A libpq connection-string value (a bare name containing '=' would be read as a connection string)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _drop_public_schema(server: Server, database: str) -> None:
    """A dump limited by ``--schema public`` creates public itself; the fresh database already has it."""
    fresh = connect(server, database, autocommit=True)
    try:
        with fresh.cursor() as cursor:
            cursor.execute("DROP SCHEMA public")
    finally:
        fresh.close()


def _terminate(cursor, database: str) -> None:
    cursor.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (database,),
    )


def _drop(admin, database: str) -> None:
    try:
        with admin.cursor() as cursor:
            _terminate(cursor, database)
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(database)))
    except psycopg2.Error:
        log.warning("could not drop database %s", database, exc_info=True)

