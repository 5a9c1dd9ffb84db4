"""``MySQL::Database`` against the real MariaDB on 127.0.0.1:3306: protect, restore, verify, refusals."""
from __future__ import annotations

import time
from pathlib import Path

import pymysql
import pytest

from karbor_site.testing.servers import MYSQL_HOST, MYSQL_PORT
from karbor_site.errors import InvalidInput

from protection.banks import bank_for_provider
from providers.plugins.mysql import quote
from providers.registry import get_registry
from providers.tests.dbkit import (
    DB_PROVIDER_ID, DbWorld, db_settings, only_reason, protect, require_server, require_tools, restore, server_options, unique_name,
    verify, write_db_provider,
)
from providers.testing import OWNER_PROJECT

MY = "MySQL::Database"
HOST, PORT = MYSQL_HOST, MYSQL_PORT
TABLES = ("customers", "orders", "audit log")

pytestmark = [pytest.mark.server, pytest.mark.usefixtures("db_settings")]
__all__ = ["db_settings"]


def execute(statement: str, params=None, database: str | None = None) -> list[tuple]:
    connection = pymysql.connect(host=HOST, port=PORT, user="root", password="", database=database,
                                 connect_timeout=5, charset="utf8mb4", autocommit=True)
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            return list(cursor.fetchall())
    finally:
        connection.close()


def contents(database: str) -> dict[str, list]:
    """Every row of every test table (ordered), the sequence, routines, triggers, views and indexes."""
    found: dict[str, list] = {}
    for table in TABLES:
        found[table] = execute(f"SELECT * FROM {quote(table)} ORDER BY 1", database=database)
    found["sequence"] = execute("SELECT next_not_cached_value FROM invoice_no", database=database)
    found["view"] = execute("SELECT * FROM big_orders ORDER BY 1", database=database)
    found["objects"] = sorted(
        execute("SELECT 'routine', ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s "
                "UNION ALL SELECT 'trigger', TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s "
                "UNION ALL SELECT 'index', INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s",
                (database, database, database))
    )
    found["auto_increment"] = execute(
        "SELECT TABLE_NAME, AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE' "
        "ORDER BY 1", (database,))
    return found


def make_database(name: str) -> None:
    execute(f"CREATE DATABASE {quote(name)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    connection = pymysql.connect(host=HOST, port=PORT, user="root", password="", database=name,
                                 charset="utf8mb4", autocommit=True)
    with connection.cursor() as cursor:
        cursor.execute("CREATE SEQUENCE invoice_no START WITH 1000")
        cursor.execute("CREATE TABLE customers (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL, "
                       "email VARCHAR(100) UNIQUE, born DATE) ENGINE=InnoDB")
        cursor.execute("CREATE TABLE orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, customer_id INT, amount DECIMAL(12,2), "
                       "note TEXT NULL, payload VARBINARY(32), invoice BIGINT, INDEX orders_by_customer (customer_id), "
                       "FOREIGN KEY (customer_id) REFERENCES customers(id)) ENGINE=InnoDB")
        cursor.execute("CREATE TABLE `audit log` (at DATETIME(6) PRIMARY KEY, what JSON) ENGINE=InnoDB")
        cursor.execute("CREATE VIEW big_orders AS SELECT id, amount FROM orders WHERE amount > 1000")
        cursor.execute("CREATE TRIGGER stamp BEFORE INSERT ON orders FOR EACH ROW "
                       "SET NEW.invoice = COALESCE(NEW.invoice, NEXTVAL(invoice_no))")
        cursor.execute("CREATE PROCEDURE order_count(OUT n INT) SELECT COUNT(*) INTO n FROM orders")
        cursor.executemany("INSERT INTO customers (name, email, born) VALUES (%s, %s, %s)",
                           [(f"customer {i}", f"c{i}@example.com", f"19{50 + i % 50}-01-{1 + i % 28:02d}") for i in range(1, 201)])
        cursor.executemany(
            "INSERT INTO orders (customer_id, amount, note, payload) VALUES (%s, %s, %s, %s)",
            [(1 + i % 200, f"{i * 1.25:.2f}", None if i % 7 == 0 else f"note ✓ {i}", bytes([i % 256]) * 16)
             for i in range(1, 1501)],
        )
        cursor.executemany("INSERT INTO `audit log` VALUES (%s, %s)",
                           [(f"2026-01-01 00:{i:02d}:00.{i:06d}", f'{{"i": {i}}}') for i in range(50)])
    connection.close()


@pytest.fixture
def my(provider_dir, tmp_path):
    require_server("MariaDB", HOST, PORT)
    require_tools("mariadb-dump", "mariadb")
    world = DbWorld(MY, unique_name("karbor_myt"))
    make_database(world.database)
    server = {"host": HOST, "port": PORT, "user": "root"}
    options = server_options(world.database, server, {"name": "bad-password", "password_env": "KARBOR_TEST_WRONG_PW"})
    write_db_provider(provider_dir, tmp_path / "bank", MY, "mysql", options)
    yield world
    leftovers = execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s",
                        (world.database + "%karbor%",))
    for name in world.created + [row[0] for row in leftovers]:
        execute(f"DROP DATABASE IF EXISTS {quote(name)}")


def test_protect_then_restore_into_a_new_database_and_in_place(db, my):
    original = contents(my.database)
    checkpoint = protect(MY, my.instance_id())
    assert checkpoint.status == "available", checkpoint.status_reason
    saved = checkpoint.saved_info[f"{MY}#{my.instance_id()}"]
    assert saved["database"] == my.database and saved["collation"] == "utf8mb4_unicode_ci"
    assert {t["name"]: t["rows"] for t in saved["tables"]} == {"audit log": 50, "customers": 200, "orders": 1500}
    assert saved["views"] == ["big_orders"] and saved["sequences"] == ["invoice_no"]
    assert (saved["routines"], saved["triggers"]) == (1, 1) and saved["dump_bytes"] > 0

    execute("DELETE FROM orders WHERE id > 10", database=my.database)
    execute("DROP TABLE `audit log`", database=my.database)
    copy = my.name("karbor_myt_copy")
    done = restore(checkpoint, MY, {"database": copy, "target": "scratch"})
    assert done.status == "success", done.resources_reason
    assert contents(copy) == original
    assert execute("SELECT DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (copy,)) == [
        ("utf8mb4_unicode_ci",)
    ]

    refused = restore(checkpoint, MY)
    assert refused.status == "fail" and "confirm_overwrite" in only_reason(refused)
    assert execute("SELECT COUNT(*) FROM orders", database=my.database) == [(10,)]
    done = restore(checkpoint, MY, {"confirm_overwrite": True})
    assert done.status == "success", done.resources_reason
    assert contents(my.database) == original


def test_verify_passes_then_fails_on_a_damaged_bank(db, my):
    checkpoint = protect(MY, my.instance_id())
    verification = verify(checkpoint)
    assert verification.status == "success", verification.resources_reason
    bank = bank_for_provider(get_registry().get(DB_PROVIDER_ID))
    packs = sorted(p for p in Path(bank.backend.root).rglob("*") if p.is_file() and "pack" in p.as_posix())
    assert packs
    for pack in packs:
        data = bytearray(pack.read_bytes())
        data[len(data) // 2] ^= 0xFF
        pack.write_bytes(bytes(data))
    damaged = verify(checkpoint)
    assert damaged.status != "success" and "cannot read the dump from the bank" in only_reason(damaged)
    # A new database whose load failed is removed again.
    copy = my.name("karbor_myt_copy")
    failed = restore(checkpoint, MY, {"database": copy})
    assert failed.status == "fail" and "cannot read the dump from the bank" in only_reason(failed)
    assert execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (copy,)) == []
    # A replacement that cannot load leaves the existing database as it was, and no staging copy.
    execute("DELETE FROM orders WHERE id > 10", database=my.database)
    failed = restore(checkpoint, MY, {"confirm_overwrite": True})
    assert failed.status == "fail" and "cannot read the dump from the bank" in only_reason(failed)
    assert execute("SELECT COUNT(*) FROM orders", database=my.database) == [(10,)]
    assert execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s",
                   (my.database + "%karbor%",)) == []


def test_instances_are_per_project_and_deny_by_default(db, my, owner, stranger):
    ids = {i.id for i in my.plugin.list_instances(project_id=OWNER_PROJECT, parameters={})}
    assert {my.instance_id(), my.instance_id("whole-server")} <= ids
    assert my.instance_id("nobody") not in ids
    assert not any(i.name.startswith("whole-server/mysql") for i in my.plugin.list_instances(project_id=OWNER_PROJECT))
    url = f"protectables/{MY}/instances/{my.instance_id()}"
    assert owner.client.get(owner.url(url)).status_code == 200
    assert stranger.client.get(stranger.url(url)).status_code == 404


def test_undeclared_restore_target_and_existing_database_fail_with_the_reason(db, my):
    checkpoint = protect(MY, my.instance_id())
    for target in ("nowhere", "theirs"):  # refused when the restore is asked for: nothing is created
        with pytest.raises(InvalidInput, match=f"restore target {target!r} is not a declared MySQL server"):
            restore(checkpoint, MY, {"database": my.name("karbor_myt_never"), "target": target})
    done = restore(checkpoint, MY, {"database": "mysql", "target": "scratch", "confirm_overwrite": True})
    assert done.status == "fail" and "'mysql' is a system database" in only_reason(done)
    existing = my.name("karbor_myt_existing")
    execute(f"CREATE DATABASE {quote(existing)}")
    execute("CREATE TABLE keep_me (x INT)", database=existing)
    done = restore(checkpoint, MY, {"database": existing, "target": "scratch"})
    assert done.status == "fail" and "exists" in only_reason(done)
    assert execute("SHOW TABLES", database=existing) == [("keep_me",)]


def test_wrong_password_fails_the_resource_within_seconds(db, my, monkeypatch):
    monkeypatch.delenv("KARBOR_TEST_WRONG_PW", raising=False)
    unset = protect(MY, my.instance_id("bad-password"))
    assert unset.status == "error"
    assert "environment variable KARBOR_TEST_WRONG_PW is not set" in only_reason(unset)
    monkeypatch.setenv("KARBOR_TEST_WRONG_PW", "certainly-not-the-password")
    started = time.monotonic()
    checkpoint = protect(MY, my.instance_id("bad-password"))
    assert time.monotonic() - started < 15
    assert checkpoint.status == "error"
    reason = only_reason(checkpoint)
    assert "bad-password" in reason and "Access denied" in reason


def test_exclude_tables_leaves_them_out_of_the_dump_and_the_restore(db, my):
    checkpoint = protect(MY, my.instance_id(), parameters={MY: {"exclude_tables": "audit log"}})
    assert checkpoint.status == "available", checkpoint.status_reason
    saved = checkpoint.saved_info[f"{MY}#{my.instance_id()}"]
    assert [t["name"] for t in saved["tables"]] == ["customers", "orders"]
    copy = my.name("karbor_myt_copy")
    done = restore(checkpoint, MY, {"database": copy})
    assert done.status == "success", done.resources_reason
    tables = {row[0] for row in execute("SHOW FULL TABLES WHERE Table_type = 'BASE TABLE'", database=copy)}
    assert tables == {"customers", "orders"}
    assert verify(checkpoint).status == "success"
