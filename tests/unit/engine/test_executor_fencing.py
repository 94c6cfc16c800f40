"""A demoted leader applies nothing: when the journal refuses its fencing token (``FencedOut``) the
executor touches no backend, writes no journal row, stops, and reports the pass interrupted."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from controller.adapters.base import ApplyResult
from controller.engine.executor import Executor
from controller.model.errors import PermanentBackendError
from controller.plan.actions import Action
from controller.plan.planner import make_plan
from controller.plan.resources import Column, DatabaseResource, ResourceKind, TableResource, TopicResource
from controller.store.db import Store
from controller.store.fencing import DEFAULT_LOCK, FencedOut, ensure_epoch_table, leader_epoch
from tests.unit.engine.fakes import MemoryAdapter

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def test_a_fenced_out_executor_applies_nothing_and_stops(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    ensure_epoch_table(store.engine)
    with store.tx() as c:  # this controller led at epoch 1; another took epoch 2 since
        c.execute(leader_epoch.insert().values(name=DEFAULT_LOCK, epoch=2, holder="other", acquired_at=NOW))
    store.fencing_token = 1
    kafka, hive = MemoryAdapter({ResourceKind.TOPIC}), MemoryAdapter({ResourceKind.DATABASE, ResourceKind.TABLE})
    adapters = {ResourceKind.TOPIC: kafka, ResourceKind.DATABASE: hive, ResourceKind.TABLE: hive}
    desired = [
        TopicResource(name="dev.t", partitions=1, replication_factor=1),
        DatabaseResource(name="dev_db"),
        TableResource(name="dev_db.t", columns=[Column(name="a", type="string")]),
    ]
    executor = Executor(store, adapters)
    report = executor.apply(make_plan("r", "1.0.0", "dev", desired, {}, NOW), "run1", "intent1")

    assert kafka.applied == [] and hive.applied == []
    assert store.journal_rows("r") == []
    assert executor.stop.is_set() and report.interrupted
    first, *rest = report.outcomes
    assert first.state == "not-run" and isinstance(first.fenced, FencedOut)
    assert "fencing token 1 is not the current leader epoch 2" in first.message
    assert [o.state for o in rest] == ["not-run", "not-run"]
    assert all(o.message == "controller stopping" for o in rest)


class TakenOverMidAction(MemoryAdapter):
    """Another controller takes leadership (epoch 2) while this action runs, and the action fails."""

    def __init__(self, store: Store) -> None:
        super().__init__({ResourceKind.TOPIC})
        self.store = store

    def apply(self, action: Action) -> ApplyResult:
        with self.store.tx() as c:
            c.execute(leader_epoch.update().values(epoch=2, holder="other"))
        raise PermanentBackendError("memory", "cannot apply")


def test_a_takeover_during_an_action_refuses_its_end_record_too(tmp_path: Path) -> None:
    """The row of an action in flight when leadership moved belongs to the new leader: the old
    one's failure record is refused as well, and the executor stops (no FencedOut escapes)."""
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    ensure_epoch_table(store.engine)
    with store.tx() as c:
        c.execute(leader_epoch.insert().values(name=DEFAULT_LOCK, epoch=1, holder="me", acquired_at=NOW))
    store.fencing_token = 1
    kafka = TakenOverMidAction(store)
    executor = Executor(store, {ResourceKind.TOPIC: kafka})
    desired = [TopicResource(name="dev.t", partitions=1, replication_factor=1)]
    report = executor.apply(make_plan("r", "1.0.0", "dev", desired, {}, NOW), "run1", "intent1")

    [outcome] = report.outcomes
    assert outcome.state == "not-run" and isinstance(outcome.fenced, FencedOut)
    assert report.interrupted and executor.stop.is_set() and not report.failed
    assert [r["state"] for r in store.journal_rows("r")] == ["started"]  # left for the new leader's re-check
