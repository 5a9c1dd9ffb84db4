"""``PostgreSQL::Database`` against the real PostgreSQL on 127.0.0.1:5432: protect, restore, verify, refusals."""
from __future__ import annotations

import time
from pathlib import Path

import psycopg2
import pytest

from karbor_site.testing.servers import PG_HOST, PG_PORT
from karbor_site.errors import InvalidInput
from django.core.exceptions import ImproperlyConfigured
from psycopg2 import sql

from protection.banks import bank_for_provider
from providers.plugins.postgresql import PostgreSQLDatabasePlugin
from providers.registry import get_registry
from providers.tests.dbkit import (
    DB_PROVIDER_ID, DbWorld, db_settings, only_reason, protect, require_server, require_tools, restore, server_options, unique_name,
    verify, write_db_provider,
)
from providers.testing import OWNER_PROJECT

PG = "PostgreSQL::Database"
HOST, PORT = PG_HOST, PG_PORT
TABLES = ("customers", "orders", "audit log")

pytestmark = [pytest.mark.server, pytest.mark.usefixtures("db_settings")]
__all__ = ["db_settings"]


def admin_connection(database: str = "postgres"):
    connection = psycopg2.connect(host=HOST, port=PORT, user="postgres", dbname=database, connect_timeout=5)
    connection.autocommit = True
    return connection


def execute(database: str, statement, params=None) -> list[tuple]:
    connection = admin_connection(database)
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


def contents(database: str) -> dict[str, list[tuple]]:
    """Every row of every test table (ordered), the sequences' positions and the extensions."""
    found = {}
    for table in TABLES:
        found[table] = execute(database, sql.SQL("SELECT * FROM {} ORDER BY 1").format(sql.Identifier(table)))
    found["sequence"] = execute(database, "SELECT last_value, is_called FROM invoice_no")
    found["extensions"] = execute(database, "SELECT extname FROM pg_extension ORDER BY 1")
    found["indexes"] = execute(database, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1")
    return found


def has_pgcrypto() -> bool:
    return bool(execute("postgres", "SELECT 1 FROM pg_available_extensions WHERE name = 'pgcrypto'"))


def make_database(name: str) -> None:
    execute("postgres", sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    connection = admin_connection(name)
    with connection.cursor() as cursor:
        if has_pgcrypto():
            cursor.execute("CREATE EXTENSION pgcrypto")
        cursor.execute("""
            CREATE SEQUENCE invoice_no START 1000;
            CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE, born date);
            CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers(id),
                                 amount numeric(12,2), note text, payload bytea, invoice bigint);
            CREATE INDEX orders_by_customer ON orders (customer_id);
            CREATE TABLE "audit log" (at timestamptz PRIMARY KEY, what jsonb);
        """)
        cursor.execute("""
            INSERT INTO customers (name, email, born)
                SELECT 'customer ' || i, 'c' || i || '@example.com', date '1980-01-01' + i FROM generate_series(1, 200) i;
            INSERT INTO orders (customer_id, amount, note, payload, invoice)
                SELECT 1 + i % 200, i * 1.25, CASE WHEN i % 7 = 0 THEN NULL ELSE 'note ✓ ' || i END,
                       decode(md5(i::text), 'hex'), nextval('invoice_no')
                FROM generate_series(1, 1500) i;
            INSERT INTO "audit log" SELECT timestamptz '2026-01-01' + i * interval '1 minute',
                jsonb_build_object('i', i, 'tags', jsonb_build_array('a', i)) FROM generate_series(1, 50) i;
        """)
    connection.close()


def drop_database(name: str) -> None:
    execute("postgres", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    execute("postgres", sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def pg(provider_dir, tmp_path):
    require_server("PostgreSQL", HOST, PORT)
    require_tools("pg_dump", "pg_restore")
    world = DbWorld(PG, unique_name("karbor_pgt"))
    make_database(world.database)
    server = {"host": HOST, "port": PORT, "user": "postgres"}
    options = server_options(world.database, server, {"name": "bad-user", "user": "karbor_no_such_role"})
    write_db_provider(provider_dir, tmp_path / "bank", PG, "postgresql", options)
    yield world
    for name in world.created:
        drop_database(name)
    leftovers = execute("postgres", "SELECT datname FROM pg_database WHERE datname LIKE %s",
                        (world.database[:40] + "%_karbor_%",))
    for (name,) in leftovers:
        drop_database(name)


def test_protect_then_restore_into_a_new_database_and_in_place(db, pg):
    original = contents(pg.database)
    checkpoint = protect(PG, pg.instance_id())
    assert checkpoint.status == "available", checkpoint.status_reason
    saved = checkpoint.saved_info[f"{PG}#{pg.instance_id()}"]
    assert saved["database"] == pg.database and saved["source"] == "local"
    assert saved["server_version"].startswith(("1", "9"))
    assert "postgres" in saved["roles"] and "plpgsql" in [e["name"] for e in saved["extensions"]]
    rows = {t["name"]: t["rows"] for t in saved["tables"]}
    assert rows == {"customers": 200, "orders": 1500, "audit log": 50}
    assert saved["dump_bytes"] > 0 and saved["size_bytes"] > 0

    # Change and drop data, then bring it back under a new name on a declared restore target.
    execute(pg.database, "DELETE FROM orders WHERE id > 10; UPDATE customers SET name = 'changed'; "
                         "DROP TABLE \"audit log\"; SELECT setval('invoice_no', 5)")
    copy = pg.name("karbor_pgt_copy")
    done = restore(checkpoint, PG, {"database": copy, "target": "scratch"})
    assert done.status == "success", done.resources_reason
    assert contents(copy) == original

    # In place needs the explicit confirmation ...
    refused = restore(checkpoint, PG)
    assert refused.status == "fail" and "confirm_overwrite" in only_reason(refused)
    assert execute(pg.database, "SELECT count(*) FROM orders") == [(10,)]
    # ... and with it the database is replaced, row for row.
    done = restore(checkpoint, PG, {"confirm_overwrite": True})
    assert done.status == "success", done.resources_reason
    assert contents(pg.database) == original


def test_second_checkpoint_of_an_unchanged_database_stores_little_and_verify_reads_it(db, pg):
    # About 10 MB, several bank chunks: only the chunks around the dump's header may change.
    execute(pg.database, "CREATE TABLE bulk AS SELECT i, repeat(md5(i::text), 20) AS filler FROM generate_series(1, 15000) i")
    first = protect(PG, pg.instance_id())
    second = protect(PG, pg.instance_id())
    key = f"{PG}#{pg.instance_id()}"
    assert second.status == "available", second.status_reason
    assert second.saved_info[key]["dump_bytes"] > 9_000_000
    assert second.saved_info[key]["new_bytes"] < 0.4 * second.saved_info[key]["dump_bytes"]
    verification = verify(first)
    assert verification.status == "success", verification.resources_reason
    details = verification.resources_status
    assert details == {key: "available"}


def test_verify_fails_when_the_dump_in_the_bank_is_damaged(db, pg):
    checkpoint = protect(PG, pg.instance_id())
    bank = bank_for_provider(get_registry().get(DB_PROVIDER_ID))
    packs = sorted(p for p in Path(bank.backend.root).rglob("*") if p.is_file() and "pack" in p.as_posix())
    assert packs
    for pack in packs:
        data = bytearray(pack.read_bytes())
        data[len(data) // 2] ^= 0xFF
        pack.write_bytes(bytes(data))
    verification = verify(checkpoint)
    assert verification.status != "success"
    assert "cannot read the dump from the bank" in only_reason(verification)
    # A restore in place that cannot read its dump leaves the existing database as it was.
    execute(pg.database, "DELETE FROM orders WHERE id > 10")
    failed = restore(checkpoint, PG, {"confirm_overwrite": True})
    assert failed.status == "fail" and "cannot read the dump from the bank" in only_reason(failed)
    assert execute(pg.database, "SELECT count(*) FROM orders") == [(10,)]
    assert execute("postgres", "SELECT datname FROM pg_database WHERE datname LIKE %s", (pg.database + "_karbor_%",)) == []


def test_listing_is_per_project_and_deny_by_default(db, pg, owner, stranger):
    ids = {i.id for i in pg.plugin.list_instances(project_id=OWNER_PROJECT, parameters={})}
    assert pg.instance_id() in ids
    whole = next(s for s in pg.plugin.sources if s.name == "whole-server")
    assert pg.plugin.instance_id(whole, pg.database) in ids  # "all databases" lists it too
    nobody = next(s for s in pg.plugin.sources if s.name == "nobody")
    assert pg.plugin.instance_id(nobody, "postgres") not in ids  # a source without projects is nobody's
    url = f"protectables/{PG}/instances/{pg.instance_id()}"
    shown = owner.client.get(owner.url(url))
    assert shown.status_code == 200 and shown.json()["instance"]["name"] == f"local/{pg.database}"
    assert "host" not in str(shown.json()["instance"]["extra_info"])
    assert stranger.client.get(stranger.url(url)).status_code == 404
    listed = stranger.client.get(stranger.url(f"protectables/{PG}/instances")).json()["instances"]
    assert listed == []


def test_undeclared_or_foreign_restore_target_fails_with_the_reason(db, pg):
    checkpoint = protect(PG, pg.instance_id())
    for target in ("nowhere", "theirs"):  # refused when the restore is asked for: nothing is created
        with pytest.raises(InvalidInput, match=f"restore target {target!r} is not a declared PostgreSQL server"):
            restore(checkpoint, PG, {"database": pg.name("karbor_pgt_never"), "target": target})
    assert not execute("postgres", "SELECT 1 FROM pg_database WHERE datname = ANY(%s)", (pg.created[1:],))


def test_restore_into_an_existing_database_needs_confirmation(db, pg):
    checkpoint = protect(PG, pg.instance_id())
    existing = pg.name("karbor_pgt_existing")
    execute("postgres", sql.SQL("CREATE DATABASE {}").format(sql.Identifier(existing)))
    execute(existing, "CREATE TABLE keep_me (x int); INSERT INTO keep_me VALUES (1)")
    done = restore(checkpoint, PG, {"database": existing, "target": "scratch"})
    assert done.status == "fail" and "exists" in only_reason(done)
    assert execute(existing, "SELECT x FROM keep_me") == [(1,)]


def test_wrong_credentials_fail_the_resource_within_seconds(db, pg):
    bad = next(s for s in pg.plugin.sources if s.name == "bad-user")
    started = time.monotonic()
    checkpoint = protect(PG, pg.plugin.instance_id(bad, pg.database))
    assert time.monotonic() - started < 15
    assert checkpoint.status == "error"
    reason = only_reason(checkpoint)
    assert "bad-user" in reason and "karbor_no_such_role" in reason


def test_unreachable_whole_server_source_is_a_503_on_show_and_absent_from_lists(db, pg, provider_dir, tmp_path, owner):
    options = {"sources": [{"name": "down", "host": HOST, "port": 1, "user": "postgres", "projects": ["*"]}]}
    write_db_provider(provider_dir, tmp_path / "bank", PG, "postgresql", options)
    plugin = get_registry().get(DB_PROVIDER_ID).plugins[PG]
    assert plugin.list_instances(project_id=OWNER_PROJECT, parameters={}) == []
    response = owner.client.get(owner.url(f"protectables/{PG}/instances/00000000-0000-4000-8000-000000000001"))
    assert response.status_code == 503 and "down" in response.json()["serviceUnavailable"]["message"]


def test_bad_operator_options_name_the_option():
    with pytest.raises(ImproperlyConfigured, match=r"options.sources.0"):
        PostgreSQLDatabasePlugin({"sources": [{"name": "x", "host": "h", "user": "u", "password": "inline"}]})
    with pytest.raises(ImproperlyConfigured, match=r"options.sources.0.password_env"):
        PostgreSQLDatabasePlugin({"sources": [{"name": "x", "host": "h", "user": "u", "password_env": "not a name"}]})
    with pytest.raises(ImproperlyConfigured, match=r"options.restore_targets: duplicate name 'a'"):
        PostgreSQLDatabasePlugin({"restore_targets": [{"name": "a", "host": "h", "user": "u"}] * 2})


def test_restore_target_field_may_name_a_declared_server_and_an_undeclared_one_is_a_400(db, pg):
    from karbor_site.errors import InvalidInput

    checkpoint = protect(PG, pg.instance_id())
    with pytest.raises(InvalidInput, match="restore target 'elsewhere' is not a declared PostgreSQL server"):
        restore(checkpoint, PG, {"database": pg.name("karbor_pgt_never")}, target="elsewhere")
    copy = pg.name("karbor_pgt_copy")
    done = restore(checkpoint, PG, {"database": copy}, target="scratch")
    assert done.status == "success", done.resources_reason
    assert done.restore_target == "scratch"
    assert execute(copy, "SELECT count(*) FROM orders") == [(1500,)]


def test_schemas_option_dumps_only_those_schemas(db, pg):
    execute(pg.database, "CREATE SCHEMA extra; CREATE TABLE extra.t (x int); INSERT INTO extra.t VALUES (1)")
    key = f"{PG}#{pg.instance_id()}"
    only_public = protect(PG, pg.instance_id(), parameters={PG: {"schemas": ["public"]}})
    assert only_public.status == "available", only_public.status_reason
    assert {t["schema"] for t in only_public.saved_info[key]["tables"]} == {"public"}
    everything = protect(PG, pg.instance_id())
    assert ("extra", "t") in {(t["schema"], t["name"]) for t in everything.saved_info[key]["tables"]}
    copy = pg.name("karbor_pgt_copy")
    done = restore(only_public, PG, {"database": copy})
    assert done.status == "success", done.resources_reason
    assert execute(copy, "SELECT count(*) FROM pg_namespace WHERE nspname = 'extra'") == [(0,)]


def test_a_failing_pg_dump_fails_the_resource_with_its_message_and_leaves_no_checkpoint(db, pg):
    checkpoint = protect(PG, pg.instance_id(), parameters={PG: {"schemas": ["no_such_schema"]}})
    assert checkpoint.status == "error"
    assert "pg_dump failed (exit status 1): pg_dump: error: no matching schemas were found" in only_reason(checkpoint)
    assert not bank_for_provider(get_registry().get(DB_PROVIDER_ID)).manifest_exists(checkpoint.id)


def test_system_databases_and_other_projects_databases_are_never_replaced(db, pg, provider_dir, tmp_path):
    checkpoint = protect(PG, pg.instance_id())
    done = restore(checkpoint, PG, {"database": "postgres", "target": "scratch", "confirm_overwrite": True})
    assert done.status == "fail" and "'postgres' is a system database" in only_reason(done)
    # Without the whole-server source, a database on the shared target that is not the project's stays untouched.
    server = {"host": HOST, "port": PORT, "user": "postgres"}
    options = server_options(pg.database, server, {"name": "bad-user", "user": "karbor_no_such_role"})
    options["sources"] = [s for s in options["sources"] if s["name"] != "whole-server"]
    write_db_provider(provider_dir, tmp_path / "bank", PG, "postgresql", options)
    foreign = pg.name("karbor_pgt_foreign")
    execute("postgres", sql.SQL("CREATE DATABASE {}").format(sql.Identifier(foreign)))
    execute(foreign, "CREATE TABLE keep_me (x int); INSERT INTO keep_me VALUES (1)")
    done = restore(checkpoint, PG, {"database": foreign, "target": "scratch", "confirm_overwrite": True})
    assert done.status == "fail" and "is not a database of this project" in only_reason(done)
    assert execute(foreign, "SELECT x FROM keep_me") == [(1,)]
    # Its own database it may replace.
    assert restore(checkpoint, PG, {"confirm_overwrite": True}).status == "success"


def test_missing_roles_are_named_and_no_owner_restores_without_them(db, pg):
    role = unique_name("karbor_pgt_role")
    execute("postgres", sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
    try:
        execute(pg.database, sql.SQL("ALTER TABLE orders OWNER TO {}").format(sql.Identifier(role)))
        checkpoint = protect(PG, pg.instance_id())
        assert role in checkpoint.saved_info[f"{PG}#{pg.instance_id()}"]["roles"]
        execute(pg.database, sql.SQL("REASSIGN OWNED BY {} TO postgres; DROP OWNED BY {}").format(
            sql.Identifier(role), sql.Identifier(role)))
        execute("postgres", sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
        refused = restore(checkpoint, PG, {"database": pg.name("karbor_pgt_copy")})
        assert refused.status == "fail" and f"roles {role} do not exist" in only_reason(refused)
        copy = pg.name("karbor_pgt_copy")
        done = restore(checkpoint, PG, {"database": copy, "no_owner": True})
        assert done.status == "success", done.resources_reason
        assert execute(copy, "SELECT tableowner FROM pg_tables WHERE tablename = 'orders'") == [("postgres",)]
        assert execute(copy, "SELECT count(*) FROM orders") == [(1500,)]
    finally:
        execute("postgres", sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
