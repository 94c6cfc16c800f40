"""Rolling an Iceberg table back on the real local stack: the metastore's lock tables
(``controller.devstack.metastore_txn``, created by the metastore's setup) let PrestoDB's ``CALL
iceberg.system.rollback_to_snapshot`` commit, and ``rollback_to_snapshot``
(``controller.adapters.hive_iceberg``) makes an older snapshot current: Presto and Spark count its
rows, the ``$history`` read of the audit records names it, a second rollback is a no-op and Spark
appends on top of it as before."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from controller.adapters import hive_iceberg as ice
from controller.adapters.presto import PrestoClient
from controller.devstack.metastore_txn import COUNTERS, TABLES, txn_schema_sql
from tests.integration.ctlkit import pg_urls

pytestmark = pytest.mark.integration


@pytest.fixture
def db(hive_conn: Callable[..., Any], unique_name: str) -> Iterator[str]:
    name = f"it{unique_name}_rb"
    cur = hive_conn().cursor()
    cur.execute(f"CREATE DATABASE `{name}`")
    cur.execute(f"CREATE TABLE iceberg.`{name}`.`events` (host string, samples int) USING iceberg")
    yield name
    cur.execute(f"DROP TABLE IF EXISTS iceberg.`{name}`.`events`")
    cur.execute(f"DROP DATABASE IF EXISTS `{name}` CASCADE")


def test_lock_tables_exist_and_the_script_is_idempotent(stack: dict[str, Any]) -> None:
    schema = f"rb_{uuid.uuid4().hex[:8]}"
    _, dsn = pg_urls(stack, schema)
    with psycopg.connect(dsn, autocommit=True) as con:
        public = {r[0] for r in con.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {t.lower() for t in TABLES} <= public  # made by the stack's metastore setup
        con.execute(f'CREATE SCHEMA "{schema}"')
        try:
            con.execute(f'SET search_path TO "{schema}"')
            con.execute(txn_schema_sql())
            con.execute("UPDATE next_lock_id SET nl_next = 7")
            con.execute(txn_schema_sql())  # again: nothing created twice, the counter kept
            assert con.execute("SELECT nl_next FROM next_lock_id").fetchall() == [(7,)]
            for table in COUNTERS:
                assert con.execute(f"SELECT count(*) FROM {table}").fetchall() == [(1,)]
        finally:
            con.execute("RESET ROLE")
            con.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_rollback_to_snapshot_restores_the_older_rows(
    db: str, hive_conn: Callable[..., Any], stack: dict[str, Any]
) -> None:
    presto = PrestoClient(stack["presto_host"], int(stack["presto_port"]))
    cur = hive_conn().cursor()
    name, table = f"{db}.events", f'iceberg."{db}"."events"'

    def current() -> str:
        return ice.parse_snapshots(presto.query(ice.snapshots_sql([name])))[name][0]

    cur.execute(f"INSERT INTO iceberg.`{db}`.`events` VALUES ('a', 1), ('b', 2), ('c', 3)")
    a = current()
    cur.execute(f"INSERT INTO iceberg.`{db}`.`events` VALUES ('d', 4), ('e', 5)")
    b = current()
    assert b != a and presto.query(f"SELECT count(*) FROM {table}") == [(5,)]

    assert ice.rollback_to_snapshot(presto, name, a) is True
    assert presto.query(f"SELECT count(*), sum(samples) FROM {table}") == [(3, 6)]
    assert current() == a
    cur.execute(f"SELECT count(*) FROM iceberg.`{db}`.`events`")
    assert cur.fetchall() == [(3,)]
    assert ice.rollback_to_snapshot(presto, name, a) is False  # already there: no CALL
    assert presto.stats.calls.get("iceberg_rollback") == 1

    # Spark's (lock-free) appends go on from the restored snapshot
    cur.execute(f"INSERT INTO iceberg.`{db}`.`events` VALUES ('f', 6)")
    assert presto.query(f"SELECT count(*), sum(samples) FROM {table}") == [(4, 12)]
    [(parent,)] = presto.query(
        f'SELECT parent_id FROM iceberg."{db}"."events$snapshots" ORDER BY committed_at DESC LIMIT 1'
    )
    assert str(parent) == a
