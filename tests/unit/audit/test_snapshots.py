"""Iceberg snapshots in audit records: the one-statement read and its fallback, the record field
(old records without it still parse and verify), and queries pinned to a run's snapshots."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controller.adapters import hive_iceberg as ice
from controller.audit.ledger import AuditRecord, Ledger, TableSnapshot
from controller.audit.snapshots import (
    MAX_ONE_BY_ONE,
    AsOfError,
    pin_query,
    query_as_of,
    read_snapshots,
    snapshots_at,
)
from controller.model.errors import TransientBackendError
from controller.model.manifest import PipelineRelease
from controller.plan.desired import StageContext
from controller.store.db import Store

T = datetime(2026, 12, 5, tzinfo=UTC)
BIG = "2227857924248221524"  # > 2**53: kept as a string


class Sql:
    """A ``SqlReader`` answering from a script: table name → row, or an exception for a table."""

    def __init__(self, rows: dict[str, tuple[Any, ...]], fail: frozenset[str] = frozenset()) -> None:
        self.rows, self.fail = rows, fail
        self.sent: list[str] = []

    def query(self, sql: str, *, op: str = "query") -> list[tuple[Any, ...]]:
        self.sent.append(sql)
        if any(f"'{t}'" in sql for t in self.fail):
            raise RuntimeError("Table not found")
        return [r for t, r in self.rows.items() if f"'{t}'" in sql]


def test_snapshots_sql_reads_the_current_snapshot_from_history() -> None:
    sql = ice.snapshots_sql(["dev_t.a", "dev_t.b"])
    assert sql.count(" UNION ALL ") == 1
    assert '"iceberg"."dev_t"."a$snapshots" s' in sql and '"iceberg"."dev_t"."b$history"' in sql
    assert "max_by(snapshot_id, made_current_at)" in sql
    with pytest.raises(Exception, match="invalid"):
        ice.snapshots_sql(['dev_t.a"; DROP TABLE x'])


def test_parse_snapshots_spells_presto_time_as_iso_utc() -> None:
    rows = [("dev_t.a", BIG, "2026-12-05 16:47:10.679 UTC")]
    assert ice.parse_snapshots(rows) == {"dev_t.a": (BIG, "2026-12-05T16:47:10.679Z")}


def test_one_statement_for_all_tables_and_a_table_without_snapshot_has_no_id() -> None:
    sql = Sql({"dev_t.a": ("dev_t.a", BIG, "2026-12-05 16:47:10.679 UTC")})
    got = read_snapshots(sql, ["dev_t.a", "dev_t.b"])
    assert len(sql.sent) == 1
    assert got == [
        TableSnapshot(table="dev_t.a", snapshot_id=BIG, committed_at="2026-12-05T16:47:10.679Z"),
        TableSnapshot(table="dev_t.b"),
    ]


def test_a_failing_table_is_named_and_does_not_hide_the_others() -> None:
    sql = Sql({"dev_t.a": ("dev_t.a", "7", "2026-12-05 16:47:10.679 UTC")}, fail=frozenset({"dev_t.b"}))
    a, b = read_snapshots(sql, ["dev_t.a", "dev_t.b"])
    assert len(sql.sent) == 3  # the batch, then each table alone
    assert a.snapshot_id == "7"
    assert b.snapshot_id is None and b.error is not None and "Table not found" in b.error


def test_the_one_by_one_fallback_is_bounded_and_skipped_when_presto_is_down() -> None:
    tables = [f"dev_t.t{i:02d}" for i in range(20)]
    sql = Sql({t: (t, "7", "2026-12-05 16:47:10.679 UTC") for t in tables}, fail=frozenset({"dev_t.t00"}))
    got = read_snapshots(sql, tables)
    assert len(sql.sent) == 1 + MAX_ONE_BY_ONE  # the batch, then the first tables alone
    assert got[0].error is not None and [g.snapshot_id for g in got[1:MAX_ONE_BY_ONE]] == ["7"] * 7
    assert all(g.snapshot_id is None and "not read (batched read failed" in (g.error or "")
               for g in got[MAX_ONE_BY_ONE:])

    class Down:
        sent = 0

        def query(self, sql: str, *, op: str = "query") -> list[tuple[Any, ...]]:
            Down.sent += 1
            raise TransientBackendError("presto", "connection refused")

    got = read_snapshots(Down(), tables)
    assert Down.sent == 1 and all("connection refused" in (g.error or "") for g in got)


def release(fmt: str) -> PipelineRelease:
    return PipelineRelease.model_validate({
        "apiVersion": "pipectl.dev/v1alpha1", "kind": "PipelineRelease", "metadata": {"name": "r"},
        "spec": {
            "version": "1.0.0", "owner": "o",
            "tables": [
                {"name": "t.ice", "format": fmt, "columns": [{"name": "a", "type": "int"}]},
                {"name": "t.plain", "columns": [{"name": "a", "type": "int"}]},
            ],
            "rollout": {"stages": ["dev"]},
        },
    })


def ctx() -> StageContext:
    from controller.model.endpoints import HiveEndpoint
    from controller.model.manifest import EnvironmentSpec

    spec = EnvironmentSpec.model_construct(hive=HiveEndpoint(host="h", database_prefix="dev_"))
    return StageContext(stage="dev", spec=spec)


def test_snapshots_at_reads_only_the_release_iceberg_tables_at_the_stage() -> None:
    sql = Sql({"dev_t.ice": ("dev_t.ice", "5", "2026-12-05 16:47:10.679 UTC")})
    got = snapshots_at(release("iceberg"), ctx(), lambda c: sql)
    assert [(s.table, s.snapshot_id) for s in got] == [("dev_t.ice", "5")]
    assert "plain" not in sql.sent[0]

    def no_presto(c: StageContext) -> Sql:
        raise AssertionError("a release without Iceberg tables asks no Presto")

    assert snapshots_at(release("parquet"), ctx(), no_presto) == []

    def down(c: StageContext) -> Sql:
        raise RuntimeError("environment lacks endpoints")

    [err] = snapshots_at(release("iceberg"), ctx(), down)
    assert err.snapshot_id is None and err.error == "RuntimeError: environment lacks endpoints"


def record(**kw: Any) -> AuditRecord:
    return AuditRecord(run_id="r1", kind="apply", release="r", stage="dev", outcome="succeeded",
                       started_at=T, finished_at=T, **kw)


def test_snapshot_ids_survive_the_chain_and_old_records_still_verify(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    ledger = Ledger(store)
    # a record as written before the field existed: its stored text has no "snapshots"
    old = record().model_dump(mode="json")
    del old["snapshots"]
    ledger.append(AuditRecord.model_validate(old))
    ledger.append(record(snapshots=[TableSnapshot(table="dev_t.ice", snapshot_id=BIG, committed_at="x")]))
    rows = store.audit_rows()
    assert "snapshots" in json.loads(rows[0]["record"])  # re-dumped: the same field, empty
    ok, msg = ledger.verify()
    assert ok, msg
    first, second = ledger.records()
    assert first["snapshots"] == [] and second["snapshots"][0]["snapshot_id"] == BIG
    assert AuditRecord.model_validate({k: v for k, v in first.items() if k != "snapshots"}).snapshots == []


SNAPS: list[dict[str, Any]] = [{"table": "dev_t.ice", "snapshot_id": BIG}, {"table": "dev_t.empty", "snapshot_id": None}]


def test_pin_query_pins_every_reference_to_the_recorded_snapshot() -> None:
    pinned = pin_query(
        "WITH w AS (SELECT a FROM dev_t.ice) SELECT count(*) FROM w JOIN iceberg.dev_t.ice i ON w.a = i.a",
        SNAPS,
    )
    assert pinned.count(f'"iceberg"."dev_t"."ice@{BIG}"') == 2
    assert " w JOIN" in pinned or "FROM w " in pinned  # the CTE is not a table
    assert pin_query("SELECT 1 FROM hive.dev_t.ice UNION ALL SELECT 2 FROM dev_t.ice", SNAPS).count("@") == 2


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("DELETE FROM dev_t.ice", "only one read-only query"),
        ("INSERT INTO dev_t.ice SELECT * FROM dev_t.ice", "only one read-only query"),
        ("SELECT 1; DROP TABLE dev_t.ice", "only one read-only query"),
        ("SELECT * FROM dev_t.other", "dev_t.other: not an Iceberg table recorded in this run"),
        ("SELECT * FROM ice", "not an Iceberg table recorded"),
        ("SELECT * FROM dev_t.empty", "dev_t.empty: no snapshot recorded in this run"),
        ("SELECT (", "cannot parse"),
    ],
)
def test_pin_query_refuses_what_cannot_be_answered_as_of_the_run(sql: str, message: str) -> None:
    with pytest.raises(AsOfError, match=message):
        pin_query(sql, SNAPS)


def test_query_as_of_sends_the_pinned_statement() -> None:
    sent: list[str] = []

    class Presto:
        def query(self, sql: str, *, op: str = "query") -> list[tuple[Any, ...]]:
            sent.append(sql)
            return [(3,)]

    pinned, rows = query_as_of(Presto(), {"snapshots": SNAPS}, "SELECT count(*) FROM dev_t.ice")
    assert rows == [(3,)] and sent == [pinned] and f"ice@{BIG}" in pinned
