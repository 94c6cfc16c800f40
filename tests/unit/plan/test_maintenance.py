"""The pure decisions of a table maintenance run (``controller.plan.maintenance``): when a run is
due, the retention cut-off on a partition boundary, and the snapshot expiry cut-off that keeps what
audit records name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.model.manifest import TableSpec
from controller.plan import maintenance as pm
from controller.plan.maintenance import AuditedSnapshot, TaskKind

NOW = datetime(2026, 12, 6, 14, 20, 5, tzinfo=UTC)


def table(maintenance: dict[str, object], partitioning: list[str] | None = None, ctype: str = "timestamp") -> TableSpec:
    return TableSpec.model_validate({
        "name": "telemetry.events_1m", "format": "iceberg",
        "columns": [{"name": "window_start", "type": ctype}, {"name": "host", "type": "string"}],
        "partitioning": partitioning or ["days(window_start)"], "maintenance": maintenance,
    })


@pytest.mark.parametrize(
    ("schedule", "last", "due"),
    [
        ("@daily", None, True),  # never ran
        ("@daily", datetime(2026, 12, 5, 23, 59, tzinfo=UTC), True),  # midnight fired since
        ("@daily", datetime(2026, 12, 6, 0, 0, 1, tzinfo=UTC), False),
        ("0 3 * * *", datetime(2026, 12, 4, 3, 0, tzinfo=UTC), True),  # two missed fires: one run
        ("*/15 * * * *", datetime(2026, 12, 6, 14, 15, tzinfo=UTC), False),
        ("*/15 * * * *", datetime(2026, 12, 6, 14, 14, 59, tzinfo=UTC), True),
    ],
)
def test_a_run_is_due_when_the_schedule_fired_since_the_last_run(
    schedule: str, last: datetime | None, due: bool
) -> None:
    assert pm.is_due(schedule, last, NOW) is due


def test_fires_at_the_exact_minute_count_and_the_next_fire_is_after_now() -> None:
    at = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
    assert pm.last_fire("0 3 * * *", at) == at
    assert pm.next_fire("0 3 * * *", at) == at + timedelta(days=1)


@pytest.mark.parametrize(
    ("transform", "cut"),
    [
        ("hours", datetime(2026, 6, 9, 14, tzinfo=UTC)),
        ("days", datetime(2026, 6, 9, tzinfo=UTC)),
        ("months", datetime(2026, 6, 1, tzinfo=UTC)),
        ("years", datetime(2026, 1, 1, tzinfo=UTC)),
    ],
)
def test_retention_cuts_on_a_boundary_of_the_columns_time_partitions(transform: str, cut: datetime) -> None:
    t = table({"schedule": "@daily", "retention": {"column": "window_start", "keep": "180d"}},
              [f"{transform}(window_start)", "bucket(4, host)"])
    [task] = pm.plan_tasks(t, "dev_telemetry.events_1m", NOW)
    assert task.kind is TaskKind.RETENTION and task.before == cut
    assert task.before <= NOW - timedelta(days=180)  # never less than `keep` is kept
    assert (task.column, task.column_type) == ("window_start", "timestamp")


def test_tasks_run_retention_compaction_expiry_then_orphans() -> None:
    t = table({
        "schedule": "@daily", "retention": {"column": "window_start", "keep": "30d"},
        "compact": {"minInputFiles": 8}, "expireSnapshots": {"olderThan": "7d", "retainLast": 3},
        "removeOrphanFiles": {"olderThan": "3d"},
    })
    tasks = pm.plan_tasks(t, "p.t", NOW)
    assert [x.kind for x in tasks] == [TaskKind.RETENTION, TaskKind.COMPACT, TaskKind.EXPIRE_SNAPSHOTS,
                                        TaskKind.REMOVE_ORPHAN_FILES]
    assert tasks[1].min_input_files == 8 and tasks[1].target_file_size_mb == 128
    assert tasks[2].before == NOW - timedelta(days=7) and tasks[2].retain_last == 3
    assert tasks[3].before == NOW - timedelta(days=3)
    assert pm.plan_tasks(table({"schedule": "@daily"}), "p.t", NOW) == []


def snap(sid: str, committed_days_ago: float, recorded_days_ago: float) -> AuditedSnapshot:
    return AuditedSnapshot(sid, NOW - timedelta(days=committed_days_ago), NOW - timedelta(days=recorded_days_ago))


def test_expiry_keeps_snapshots_named_by_recent_records_and_by_the_latest_record_whatever_its_age() -> None:
    # a snapshot recorded 10 days ago (within keepAudited 30d), committed 12 days ago: kept
    cut, why = pm.expiry_cutoff("7d", "30d", NOW, [snap("a", 12, 10), snap("old", 90, 60)])
    assert cut == NOW - timedelta(days=12) - pm.MARGIN and "a" in why
    # only records older than keepAudited: the latest one still holds its snapshot (a rollback's base)
    cut, why = pm.expiry_cutoff("7d", "30d", NOW, [snap("older", 200, 100), snap("latest", 70, 60)])
    assert cut == NOW - timedelta(days=70) - pm.MARGIN and "latest" in why
    # recorded snapshots newer than olderThan's cut change nothing
    assert pm.expiry_cutoff("7d", "30d", NOW, [snap("new", 1, 1)]) == (NOW - timedelta(days=7),
                                                                        "snapshots older than 7d")
    assert pm.expiry_cutoff("7d", "30d", NOW, [])[0] == NOW - timedelta(days=7)
