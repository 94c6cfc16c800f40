"""Maintenance tasks as Spark SQL (``controller.adapters.hive_maintenance``): one statement per
task, names quoted, UTC literals with milliseconds, and what a run reports from the procedures'
rows or the retention delete's snapshot summary."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from controller.adapters.hive_maintenance import newest_snapshot_sql, outcome, task_sql
from controller.plan.maintenance import Task, TaskKind

AT = datetime(2026, 6, 9, 0, 0, 0, 123456, tzinfo=UTC)


def test_retention_deletes_below_the_cut_off_with_a_literal_of_the_columns_type() -> None:
    ts = Task(TaskKind.RETENTION, "dev_telemetry.events_1m", "", before=AT, column="window_start",
              column_type="timestamp")
    assert task_sql(ts) == ("DELETE FROM `iceberg`.`dev_telemetry`.`events_1m` "
                            "WHERE `window_start` < TIMESTAMP_NTZ '2026-06-09 00:00:00.123'")
    day = Task(TaskKind.RETENTION, "d.t", "", before=AT, column="day", column_type="date")
    assert task_sql(day).endswith("WHERE `day` < DATE '2026-06-09'")


def test_procedures_take_the_table_by_name_and_the_cut_off_as_a_timestamp() -> None:
    expire = Task(TaskKind.EXPIRE_SNAPSHOTS, "d.t", "", before=AT, retain_last=3)
    assert task_sql(expire) == ("CALL iceberg.system.expire_snapshots(table => 'd.t', older_than => "
                                "TIMESTAMP '2026-06-09 00:00:00.123', retain_last => 3)")
    orphans = Task(TaskKind.REMOVE_ORPHAN_FILES, "d.t", "", before=AT)
    assert task_sql(orphans) == ("CALL iceberg.system.remove_orphan_files(table => 'd.t', older_than => "
                                 "TIMESTAMP '2026-06-09 00:00:00.123')")
    compact = Task(TaskKind.COMPACT, "d.t", "", min_input_files=6, target_file_size_mb=64)
    assert task_sql(compact) == ("CALL iceberg.system.rewrite_data_files(table => 'd.t', options => "
                                 "map('min-input-files', '6', 'target-file-size-bytes', '67108864'))")
    assert newest_snapshot_sql("d.t").startswith("SELECT snapshot_id, operation, summary FROM `iceberg`.`d`.`t`")


def test_a_name_that_is_not_an_identifier_is_refused() -> None:
    with pytest.raises(ValueError):
        task_sql(Task(TaskKind.RETENTION, "d.t", "", before=AT, column="x` OR 1=1 --", column_type="timestamp"))
    with pytest.raises(ValueError):
        task_sql(Task(TaskKind.EXPIRE_SNAPSHOTS, "d.t'); DROP TABLE x; --", "", before=AT))


def test_what_a_run_reports() -> None:
    retention = Task(TaskKind.RETENTION, "d.t", "", before=AT, column="c", column_type="timestamp")
    summary = json.dumps({"deleted-data-files": "2", "deleted-records": "4", "total-records": "9"})
    assert outcome(retention, [], 1, (2, "delete", summary)) == {
        "snapshot": "2", "operation": "delete", "deleted-data-files": "2", "deleted-records": "4",
        "added-data-files": "0", "added-records": "0",
    }
    assert outcome(retention, [], 1, (1, "append", "{}")) == {"deleted-records": "0"}  # no new snapshot
    expire = Task(TaskKind.EXPIRE_SNAPSHOTS, "d.t", "", before=AT)
    assert outcome(expire, [(5, 0, 0, 2, 4, 0)], None, None)["deleted_data_files"] == "5"
    assert outcome(Task(TaskKind.REMOVE_ORPHAN_FILES, "d.t", "", before=AT), [("f1",), ("f2",)], None, None) == {
        "removed_files": "2"}
