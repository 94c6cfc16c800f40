"""The Presto statement reading an Iceberg table's snapshot log for a rollback decision, and its
rows parsed (``snapshot_log_sql``, ``parse_snapshot_log`` in controller/adapters/hive_iceberg.py);
the current-snapshot read of audit records through Presto or the Thrift Server."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from controller.adapters import hive_iceberg as ice
from controller.adapters.hive_iceberg import parse_snapshot_log, snapshot_log_sql
from controller.audit.snapshots import PrestoSnapshots, read_snapshots, snapshot_port
from controller.model.identifiers import IdentifierError


def test_snapshot_log_sql_reads_ids_parents_times_and_summaries_oldest_first() -> None:
    assert snapshot_log_sql("prod_telemetry.host_metrics_1m") == (
        "SELECT CAST(snapshot_id AS varchar), CAST(parent_id AS varchar), CAST(committed_at AS varchar), "
        'json_format(CAST(summary AS json)) FROM "iceberg"."prod_telemetry"."host_metrics_1m$snapshots" '
        "ORDER BY committed_at, snapshot_id"
    )


def test_snapshot_log_sql_refuses_a_name_that_is_not_an_identifier() -> None:
    with pytest.raises(ValueError):
        snapshot_log_sql('db.t"; DROP TABLE x; --')


def test_rows_parse_to_ids_parents_utc_times_and_summaries() -> None:
    rows = [
        ("1", None, "2026-12-05 16:47:10.679 UTC", '{"pipectl.version":"1.0.0"}'),
        ("2", "1", "2026-12-05 16:47:20.001 UTC", {"pipectl.batch-id": 3}),
    ]
    assert parse_snapshot_log(rows) == [
        ("1", None, "2026-12-05T16:47:10.679+00:00", {"pipectl.version": "1.0.0"}),
        ("2", "1", "2026-12-05T16:47:20.001+00:00", {"pipectl.batch-id": "3"}),
    ]


def test_snapshots_spark_sql_reads_the_current_snapshot_in_epoch_millis() -> None:
    sql = ice.snapshots_spark_sql(["db.t", "db.u"])
    assert sql.count(" UNION ALL ") == 1
    assert "FROM `iceberg`.`db`.`t`.snapshots s" in sql and "FROM `iceberg`.`db`.`t`.history)" in sql
    assert "unix_millis(s.committed_at)" in sql  # no session time zone can shift it
    with pytest.raises(IdentifierError):
        ice.snapshots_spark_sql(["db.t'; DROP TABLE x; --"])


def test_spark_snapshots_parse_like_prestos() -> None:
    spark = ice.parse_spark_snapshots([("db.t", "1899718701647421878", 1796852415037)])
    presto = ice.parse_snapshots([("db.t", "1899718701647421878", "2026-12-09 21:40:15.037 UTC")])
    assert spark == presto == {"db.t": ("1899718701647421878", "2026-12-09T21:40:15.037Z")}


def test_the_engine_reads_snapshots_through_the_table_adapter_when_it_can() -> None:
    class Thrift:
        def current_snapshots(self, tables: Sequence[str]) -> dict[str, tuple[str, str]]:
            return {t: ("7", "2026-01-01T00:00:00.000Z") for t in tables}

    class Sql:
        def query(self, sql: str, *, op: str = "query") -> list[tuple[Any, ...]]:
            raise AssertionError("Presto is not asked when the table adapter reads snapshots")

    assert isinstance(snapshot_port(Thrift()), Thrift)
    assert isinstance(snapshot_port(Sql()), PrestoSnapshots)
    [snap] = read_snapshots(Thrift(), ["db.t"])
    assert (snap.snapshot_id, snap.committed_at) == ("7", "2026-01-01T00:00:00.000Z")
