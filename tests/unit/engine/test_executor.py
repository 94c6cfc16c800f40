"""Executor: waves in dependency order, journal before/after, no action applied twice after a crash."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.engine.executor import Executor, waves
from controller.model.errors import PlanRefusedError
from controller.plan.actions import Action, DiffContext, Op, Plan
from controller.plan.planner import make_plan
from controller.plan.resources import Column, DatabaseResource, ResourceKind, TableResource, TopicResource
from controller.store.db import Store
from tests.unit.engine.fakes import MemoryAdapter

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def desired() -> list[object]:
    return [
        TopicResource(name="dev.t", partitions=3, replication_factor=1, config={"retention.ms": "1000"}),
        DatabaseResource(name="dev_db"),
        TableResource(name="dev_db.t", columns=[Column(name="a", type="string")]),
    ]


@pytest.fixture
def world(tmp_path: Path) -> tuple[Store, MemoryAdapter, MemoryAdapter, dict[ResourceKind, MemoryAdapter]]:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    kafka = MemoryAdapter({ResourceKind.TOPIC})
    hive = MemoryAdapter({ResourceKind.DATABASE, ResourceKind.TABLE})
    return (
        store,
        kafka,
        hive,
        {ResourceKind.TOPIC: kafka, ResourceKind.DATABASE: hive, ResourceKind.TABLE: hive},
    )


def plan_for(adapters: dict[ResourceKind, MemoryAdapter]) -> Plan:
    live = {}
    for a in {id(x): x for x in adapters.values()}.values():
        for r in a.live.values():
            live[r.key] = r
    return make_plan("r", "1.0.0", "dev", desired(), live, NOW)


def test_waves_follow_kind_order(world) -> None:  # type: ignore[no-untyped-def]
    _, _, _, adapters = world
    p = plan_for(adapters)
    assert [[a.kind for a in w] for w in waves(p.actions)] == [
        [ResourceKind.DATABASE],
        [ResourceKind.TOPIC],
        [ResourceKind.TABLE],
    ]


def test_dependent_transforms_run_in_later_waves_than_their_upstreams() -> None:
    def t(name: str, *deps: str) -> Action:
        return Action(op=Op.CREATE, kind=ResourceKind.TRANSFORM, name=name, reason="new", depends_on=list(deps))

    topic = Action(op=Op.CREATE, kind=ResourceKind.TOPIC, name="events", reason="new")
    actions = [topic, t("a"), t("b"), t("c", "a"), t("d", "c", "b"), t("e", "elsewhere")]
    assert [[a.name for a in w] for w in waves(actions)] == [["events"], ["a", "b", "e"], ["c"], ["d"]]
    # listed before its upstream: still a later wave
    assert [[a.name for a in w] for w in waves([t("d", "c"), t("c")])] == [["c"], ["d"]]


def test_apply_converges_and_journals(world) -> None:  # type: ignore[no-untyped-def]
    store, _kafka, _hive, adapters = world
    report = Executor(store, adapters).apply(plan_for(adapters), "run1", "intent1")
    assert [o.state for o in report.outcomes] == ["done", "done", "done"]
    assert [r["state"] for r in store.journal_rows("r")] == ["done", "done", "done"]
    assert plan_for(adapters).is_noop


def test_crash_after_action_before_journal_is_not_applied_twice(world) -> None:  # type: ignore[no-untyped-def]
    store, kafka, hive, adapters = world
    p = plan_for(adapters)
    # Simulate a crash: the first action ran and was journaled 'started' but never 'done'.
    first = p.actions[0]
    store.journal_begin("run1", "r", "dev", "intent1", first.id, first.model_dump_json())
    hive.live[first.name] = first.desired
    report = Executor(store, adapters).apply(p, "run2", "intent1")
    assert [o.state for o in report.outcomes] == ["skipped", "done", "done"]
    assert first.id not in hive.applied + kafka.applied
    assert store.journal_state("intent1", first.id) == "skipped"


def test_failed_wave_stops_later_waves(world) -> None:  # type: ignore[no-untyped-def]
    store, kafka, _hive, adapters = world
    kafka.fail_on.add("dev.t")
    report = Executor(store, adapters).apply(plan_for(adapters), "run1", "intent1")
    assert [(o.action.kind, o.state) for o in report.outcomes] == [
        (ResourceKind.DATABASE, "done"),
        (ResourceKind.TOPIC, "failed"),
        (ResourceKind.TABLE, "not-run"),
    ]
    assert store.journal_state("intent1", "Topic/dev.t/create") == "failed"


def test_refused_plan_applies_nothing(world) -> None:  # type: ignore[no-untyped-def]
    store, kafka, hive, adapters = world
    kafka.live["dev.t"] = TopicResource(
        name="dev.t", partitions=6, replication_factor=1, config={"retention.ms": "1000"}
    )
    p = plan_for(adapters)
    assert [a.op for a in p.actions if a.kind is ResourceKind.TOPIC] == [Op.REFUSE]
    with pytest.raises(PlanRefusedError):
        Executor(store, adapters).apply(p, "run1", "intent1")
    assert hive.applied == [] and kafka.applied == []


def test_stop_event_leaves_remaining_actions_not_run(world) -> None:  # type: ignore[no-untyped-def]
    store, _kafka, _hive, adapters = world
    ex = Executor(store, adapters)
    ex.stop.set()
    report = ex.apply(plan_for(adapters), "run1", "intent1")
    assert report.interrupted and all(o.state == "not-run" for o in report.outcomes)


def test_unused_action_helpers() -> None:
    a = Action(op=Op.CREATE, kind=ResourceKind.TOPIC, name="x", reason="missing")
    assert a.describe() == "create topic x (missing)"
    assert DiffContext().prune is False
