"""Iceberg table maintenance as Spark SQL on the stage's Thrift Server (issue #16 item 5): each
``controller.plan.maintenance.Task`` is one statement, run by ``IcebergMaintenance.maintain``.

The procedures (``CALL iceberg.system.expire_snapshots`` ...) need Iceberg's SQL extensions on the
Thrift Server (the local stack loads them: ``controller/devstack/components.py``). Retention is a
``DELETE`` whose predicate is a partition boundary of the column's time transform, which Iceberg
answers by dropping whole data files (a ``delete`` snapshot that adds none); its summary is read
back so the run reports what went and shows that nothing was rewritten.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from controller.adapters.hive_iceberg import iceberg_name, parse_spark_snapshots, snapshots_spark_sql
from controller.model.identifiers import check_hive_ident, quote_hive, spark_string_literal, split_qualified
from controller.plan.maintenance import Task, TaskKind

_OUTPUTS = {
    TaskKind.EXPIRE_SNAPSHOTS: (
        "deleted_data_files",
        "deleted_position_delete_files",
        "deleted_equality_delete_files",
        "deleted_manifest_files",
        "deleted_manifest_lists",
        "deleted_statistics_files",
    ),
    TaskKind.COMPACT: ("rewritten_data_files", "added_data_files", "rewritten_bytes", "failed_data_files"),
}
_SUMMARY_KEYS = ("deleted-data-files", "deleted-records", "added-data-files", "added-records")


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def task_sql(task: Task) -> str:
    """The Spark SQL statement of ``task`` (the session's time zone is UTC: spark-defaults)."""
    db, table = split_qualified(task.table)
    name = spark_string_literal(f"{db}.{table}")
    if task.kind is TaskKind.RETENTION:
        assert task.before is not None and task.column is not None
        literal = (
            f"DATE '{task.before:%Y-%m-%d}'"
            if task.column_type == "date"
            else f"TIMESTAMP_NTZ '{_ts(task.before)}'"
        )
        column = quote_hive(check_hive_ident(task.column, "column"))
        return f"DELETE FROM {iceberg_name(db, table)} WHERE {column} < {literal}"  # noqa: S608 - quoted
    if task.kind is TaskKind.COMPACT:
        opts = (
            f"map('min-input-files', '{task.min_input_files}', "
            f"'target-file-size-bytes', '{(task.target_file_size_mb or 128) * 1024 * 1024}')"
        )
        return f"CALL iceberg.system.rewrite_data_files(table => {name}, options => {opts})"
    assert task.before is not None
    if task.kind is TaskKind.EXPIRE_SNAPSHOTS:
        return (
            f"CALL iceberg.system.expire_snapshots(table => {name}, older_than => TIMESTAMP "
            f"'{_ts(task.before)}', retain_last => {task.retain_last or 1})"
        )
    when = _ts(task.before)
    return f"CALL iceberg.system.remove_orphan_files(table => {name}, older_than => TIMESTAMP '{when}')"


def newest_snapshot_sql(table: str) -> str:
    db, name = split_qualified(table)
    return (
        f"SELECT snapshot_id, operation, summary FROM {iceberg_name(db, name)}.snapshots "  # noqa: S608
        "ORDER BY committed_at DESC LIMIT 1"
    )


def outcome(
    task: Task, rows: list[tuple[Any, ...]], before: Any, after: tuple[Any, ...] | None
) -> dict[str, str]:
    """What a task did, as strings for the run's record: the procedure's counters, or for
    retention the delete snapshot's summary (nothing when no partition was old enough)."""
    if task.kind is TaskKind.RETENTION:
        if after is None or after[0] == before:
            return {"deleted-records": "0"}
        raw = after[2] or {}
        summary = json.loads(raw) if isinstance(raw, str) else raw  # the Thrift Server sends a map as JSON
        out = {"snapshot": str(after[0]), "operation": str(after[1])}
        out.update({k: str(summary.get(k, "0")) for k in _SUMMARY_KEYS})
        return out
    if task.kind is TaskKind.REMOVE_ORPHAN_FILES:
        return {"removed_files": str(len(rows))}
    names = _OUTPUTS[task.kind]
    first = rows[0] if rows else ()
    return {n: str(v) for n, v in zip(names, first, strict=False)}


class IcebergMaintenance:
    """Mixed into ``HiveAdapter``: ``maintain(task)`` and ``current_snapshots(tables)`` on its
    Thrift Server connection."""

    if TYPE_CHECKING:  # HiveThriftConnection's

        def _query(self, sql: str, op: str) -> list[tuple[Any, ...]]: ...
        def _execute(self, sql: str, op: str) -> None: ...

    def maintain(self, task: Task) -> dict[str, str]:
        if task.kind is not TaskKind.RETENTION:
            return outcome(task, self._query(task_sql(task), f"maintain_{task.kind.lower()}"), None, None)
        newest = self._query(newest_snapshot_sql(task.table), "iceberg_newest_snapshot")
        before = newest[0][0] if newest else None
        self._execute(task_sql(task), "maintain_retention")
        after = self._query(newest_snapshot_sql(task.table), "iceberg_newest_snapshot")
        return outcome(task, [], before, after[0] if after else None)

    def current_snapshots(self, tables: Sequence[str]) -> dict[str, tuple[str, str]]:
        """Each Iceberg table's current snapshot id and commit time, in one statement (the audit
        record's data side, ``controller.audit.snapshots``); a table without a snapshot is absent."""
        return parse_spark_snapshots(self._query(snapshots_spark_sql(tables), "iceberg_snapshots"))
