"""The Presto statement reading an Iceberg table's snapshot log for a rollback decision, and its
rows parsed (``snapshot_log_sql``, ``parse_snapshot_log`` in controller/adapters/hive_iceberg.py)."""

from __future__ import annotations

import pytest

from controller.adapters.hive_iceberg import parse_snapshot_log, snapshot_log_sql


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
