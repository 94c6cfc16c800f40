"""Scheduled Iceberg table maintenance through the real ``Reconciler`` over the fakes of
``world.py`` (``controller.engine.maintenance``): a stage in sync runs each table's maintenance
when its schedule fired since the last run, records the attempt first, writes an audit record and
an event per run, requeues for the next fire, retries a failed run after ``RETRY`` (not at every
pass) and moves the snapshot expiry cut-off back to the snapshot the stage's audit records name."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.engine.maintenance import RETRY, RunState
from controller.model.reasons import Reason
from controller.obs.logging import register_secret
from controller.plan.maintenance import Task, TaskKind
from tests.unit.engine.world import STAGES, World, release_yaml, repo_files

pytestmark = pytest.mark.usefixtures("quiet_logs")

NOW = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
PARQUET = "      partitionedBy:\n        - {name: dt, type: string}\n"
MAINTAINED = """\
      format: iceberg
      partitioning: [days(window_start)]
      maintenance:
        schedule: "0 3 * * *"
        retention: {column: window_start, keep: 180d}
        expireSnapshots: {olderThan: 7d, retainLast: 2, keepAudited: 30d}
"""


def maintained_release(version: str) -> dict[str, str]:
    text = release_yaml(version)
    assert PARQUET in text
    return {"releases/metrics.yaml": text.replace(PARQUET, MAINTAINED)}


class Maintainer:
    """The ``maintain`` of a stage's table adapter: records each task, or raises ``fail``."""

    def __init__(self) -> None:
        self.tasks: list[Task] = []
        self.fail: Exception | None = None

    def __call__(self, task: Task) -> dict[str, str]:
        if self.fail is not None:
            raise self.fail
        self.tasks.append(task)
        return {"deleted-records": "7"} if task.kind is TaskKind.RETENTION else {"deleted_data_files": "3"}


@pytest.fixture
def w(tmp_path: Path) -> World:
    world = World(tmp_path)
    world.commit({**repo_files(), **maintained_release("1.0.0")})
    for inst in ("dev", "staging", "prod"):
        world.at(inst).hive.maintain = Maintainer()  # type: ignore[attr-defined]
    return world


def maintainer(w: World, inst: str) -> Maintainer:
    m = w.at(inst).hive.maintain  # type: ignore[attr-defined]
    assert isinstance(m, Maintainer)
    return m


def runs(w: World, stage: str) -> list[dict[str, Any]]:
    return [r for r in w.audit("maintenance") if r["stage"] == stage]


def test_each_stage_runs_its_tables_maintenance_once_in_sync_then_at_each_fire(w: World) -> None:
    w.promote_everywhere("1.0.0")
    w.reconcile()  # prod's first pass in sync (it Succeeded in the last one)
    for stage in STAGES:
        assert len(runs(w, stage)) == 1, stage
    dev = maintainer(w, "dev")
    assert [t.kind for t in dev.tasks] == [TaskKind.RETENTION, TaskKind.EXPIRE_SNAPSHOTS]
    first = dev.tasks[0]
    assert first.table == "dev_telemetry.metrics_1m__v1_0_0"
    ran_at = datetime.fromisoformat(runs(w, "dev")[0]["started_at"])
    assert first.before == (ran_at - timedelta(days=180)).replace(hour=0, minute=0, second=0, microsecond=0)
    rec = runs(w, "dev")[0]
    assert rec["outcome"] == "Succeeded" and rec["details"]["table"] == first.table
    assert any("deleted-records=7" in a for a in rec["actions"])
    events = [e for e in w.store.recent_events("metrics", 200) if e["reason"] == Reason.TABLE_MAINTAINED]
    assert len(events) == len(STAGES)

    # not due again until 03:00 UTC: more passes run nothing, and the pass asks to come back by then
    before = len(dev.tasks)
    w.clock.advance(600)
    res = w.reconcile()
    assert len(dev.tasks) == before
    next_fire = (w.clock() + timedelta(days=1)).replace(hour=3, minute=0, second=0, microsecond=0)
    if w.clock().hour < 3:
        next_fire -= timedelta(days=1)
    assert res.requeue_after is not None
    assert res.requeue_after <= (next_fire - w.clock()).total_seconds() + 1

    w.clock.advance((next_fire - w.clock()).total_seconds() + 5)
    w.reconcile()
    assert len(dev.tasks) == before + 2
    assert len(runs(w, "dev")) == 2


def test_a_failed_run_is_recorded_and_retried_after_the_retry_delay_not_at_every_pass(w: World) -> None:
    register_secret("s3cr3t-thrift-pass")
    for inst in ("dev", "staging", "prod"):
        maintainer(w, inst).fail = RuntimeError("thrift server gone (user hive, password s3cr3t-thrift-pass)")
    w.commit({})
    for _ in range(12):  # promote with maintenance failing: the promotion is not held up by it
        w.reconcile()
        w.clock.advance(30)
    dev = maintainer(w, "dev")
    failed = [r for r in runs(w, "dev") if r["outcome"] == "Failed"]
    assert failed and "thrift server gone" in failed[0]["message"]
    events = [e["message"] for e in w.store.recent_events("metrics", 200) if e["reason"] == Reason.MAINTENANCE_FAILED]
    assert events and all("s3cr3t" not in m for m in events + [r["message"] for r in failed])
    key = next(k for k in w.store.kv_prefix("maintenance/metrics/dev/"))
    state = json.loads(w.store.kv_prefix("maintenance/metrics/dev/")[key])
    assert state["succeeded"] is None and "thrift server gone" in state["error"]
    attempts = len(failed)

    dev.fail = None
    w.clock.advance(60)
    w.reconcile()
    assert dev.tasks == []  # within RETRY of the failed attempt
    w.clock.advance(RETRY.total_seconds())
    w.reconcile()
    assert [t.kind for t in dev.tasks] == [TaskKind.RETENTION, TaskKind.EXPIRE_SNAPSHOTS]
    assert len([r for r in runs(w, "dev") if r["outcome"] == "Failed"]) == attempts
    assert runs(w, "dev")[-1]["outcome"] == "Succeeded"


def test_expiry_keeps_the_snapshot_the_stages_latest_audit_record_names(w: World) -> None:
    committed = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)  # long before olderThan's cut-off
    w.at("dev").presto.by_op["iceberg_snapshots"] = [
        ("dev_telemetry.metrics_1m__v1_0_0", "4242", committed.strftime("%Y-%m-%d %H:%M:%S.000 UTC"))
    ]
    w.promote_everywhere("1.0.0")
    w.reconcile()
    expire = next(t for t in maintainer(w, "dev").tasks if t.kind is TaskKind.EXPIRE_SNAPSHOTS)
    assert expire.before == committed - timedelta(seconds=1)
    assert "4242" in expire.reason
    other = next(t for t in maintainer(w, "staging").tasks if t.kind is TaskKind.EXPIRE_SNAPSHOTS)
    assert other.before is not None and other.before > committed  # staging's records name none


@pytest.mark.parametrize(
    ("state", "schedule", "expected"),
    [
        # succeeded two days ago, next fire in 5 minutes: look again at the fire, not at once
        (RunState(NOW - timedelta(days=2), NOW - timedelta(days=2)), "5 3 * * *", NOW + timedelta(minutes=5)),
        # failed 3 minutes ago: the retry, 7 minutes on, comes before the next fire (noon)
        (RunState(NOW - timedelta(minutes=3), None, "boom"), "0 12 * * *", NOW + timedelta(minutes=7)),
        # ... unless the schedule fires first
        (RunState(NOW - timedelta(minutes=3), None, "boom"), "5 3 * * *", NOW + timedelta(minutes=5)),
        # failed, but it succeeded after the last fire: wait for the next fire
        (RunState(NOW - timedelta(minutes=3), NOW - timedelta(hours=1), "boom"), "0 12 * * *",
         NOW + timedelta(hours=9)),
    ],
)
def test_the_next_look_is_the_next_fire_or_a_failed_runs_retry_never_in_the_past(
    state: RunState, schedule: str, expected: datetime
) -> None:
    assert state.next_check(schedule, NOW) == expected
