"""The Hive metastore's transaction and lock tables (controller.devstack.metastore_txn), offline:
the script creates only what is missing, as role hive, and seeds each id counter only while it is
empty; the metastore component runs it in database ``metastore`` once healthy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controller.devstack import components
from controller.devstack.component import Context
from controller.devstack.layout import Layout
from controller.devstack.metastore_txn import COUNTERS, TABLES, txn_schema_sql


def test_script_creates_every_lock_and_txn_table_if_missing_as_role_hive() -> None:
    sql = txn_schema_sql()
    stmts = [s.strip() for s in sql.split(";\n")]
    assert stmts[0] == "SET ROLE hive"
    created = re.findall(r"^CREATE TABLE IF NOT EXISTS (\w+) \(", sql, re.M)
    assert created == list(TABLES)
    # what TxnHandler.lock() touches in Hive 2.3
    assert {"HIVE_LOCKS", "NEXT_LOCK_ID", "TXNS", "TXN_COMPONENTS", "AUX_TABLE"} <= set(created)
    assert "CREATE TABLE " not in sql.replace("CREATE TABLE IF NOT EXISTS ", "")
    assert re.findall(r"CREATE INDEX IF NOT EXISTS (\w+)", sql) == ["TC_TXNID_INDEX", "HL_TXNID_INDEX"]


def test_counters_are_seeded_only_when_empty() -> None:
    sql = txn_schema_sql()
    for table, col in COUNTERS.items():
        assert f"INSERT INTO {table} ({col}) SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM {table})" in sql
    assert sql.count("INSERT INTO") == len(COUNTERS)


def test_metastore_runs_the_script_in_its_database_once_healthy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[tuple[str, str]] = []

    def psql(self: components.Postgres, sql: str, db: str = "postgres") -> str:
        ran.append((sql, db))
        return ""

    monkeypatch.setattr(components.Postgres, "psql", psql)
    ctx = Context(layout=Layout(tmp_path), java_home=Path("/usr"), spark_home=tmp_path,
                  spark_version="3.5.9", python="python3", pg_bin=tmp_path)
    components.Metastore(ctx).after_healthy()
    assert ran == [(txn_schema_sql(), "metastore")]
