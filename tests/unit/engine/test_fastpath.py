"""The no-op fast path (``controller.engine.fastpath``): a converged release-stage whose inputs and
live state did not change skips planning, still exports its metrics, and plans again on drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.engine import stage_ops
from controller.engine.fastpath import FastPath, Ref, digest
from controller.plan.actions import Plan
from controller.plan.resources import ResourceKind, TopicResource
from tests.unit.engine.world import STAGES, T0, World, repo_files


def _count_plans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    planned: list[str] = []
    real = stage_ops.make_plan

    def counting(*a: Any, **kw: Any) -> Plan:
        planned.append(a[2])  # the stage
        return real(*a, **kw)

    monkeypatch.setattr(stage_ops, "make_plan", counting)
    return planned


def test_converged_passes_skip_planning_until_live_state_drifts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = World(tmp_path)
    w.reconciler.ops.share_live_state()
    w.commit(repo_files())
    w.promote_everywhere("1.0.0")
    w.settle()
    planned = _count_plans(monkeypatch)
    exported: list[str] = []
    real_export = w.reconciler.stage_metrics.export
    monkeypatch.setattr(
        w.reconciler.stage_metrics, "export", lambda p, stage: (exported.append(stage), real_export(p, stage))
    )
    hits = w.reconciler.ops.fast.hits
    w.clock.advance(120)
    assert not w.reconcile().errors
    assert planned == []
    assert w.reconciler.ops.fast.hits - hits == len(STAGES)
    assert sorted(exported) == sorted(STAGES)  # metrics still exported on the fast path
    assert next(c for c in w.status().conditions if c.type == "Ready").status == "True"

    # drift: a topic deleted behind pipectl's back at dev is planned and recreated
    dev = w.at("dev").kafka
    topic = sorted(n for k, n in dev.live if k is ResourceKind.TOPIC)[0]
    del dev.live[(ResourceKind.TOPIC, topic)]
    w.clock.advance(120)
    assert not w.reconcile().errors
    assert "dev" in planned
    assert (ResourceKind.TOPIC, topic) in dev.live


def test_a_new_commit_plans_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(tmp_path)
    w.commit(repo_files())
    w.promote_everywhere("1.0.0")
    w.settle()
    planned = _count_plans(monkeypatch)
    w.commit({"README.md": "a commit that changes nothing the release reads\n"})
    w.clock.advance(120)
    assert not w.reconcile().errors
    assert planned  # the commit is an input: no fast path across commits


def test_only_plans_without_actions_are_remembered() -> None:
    fast = FastPath()
    empty = Plan(release="r", version="1", stage="dev", generated_at=T0)
    fast.remember("r", "dev", "in", [], "live", empty)
    key = fast.candidate("r", "dev", "in")
    assert key is not None and fast.candidate("r", "dev", "other") is None
    assert fast.confirm("r", "dev", key, "drifted") is None
    assert fast.candidate("r", "dev", "in") is None  # drift forgets the pass
    fast.remember("r", "dev", "in", [], "live", empty)
    key = fast.candidate("r", "dev", "in")
    assert key is not None and fast.confirm("r", "dev", key, "live") == empty


def test_digest_is_stable_and_sensitive() -> None:
    assert digest({"b": 1, "a": [1, 2]}, {3, 1}) == digest({"a": [1, 2], "b": 1}, {1, 3})
    assert digest({"a": [1, 2]}) != digest({"a": [2, 1]})


def test_a_remembered_pass_holds_references_not_the_desired_models() -> None:
    """What a hit reads live state for is kind and name: the models are not held between passes."""
    fast = FastPath()
    empty = Plan(release="r", version="1", stage="dev", generated_at=T0)
    topic = TopicResource(name="dev.t", partitions=3, replication_factor=1, config={"retention.ms": "1"})
    fast.remember("r", "dev", "in", [topic], "live", empty)
    key = fast.candidate("r", "dev", "in")
    assert key is not None and key.desired == (Ref("Topic", "dev.t"),)
    assert all(not isinstance(d, TopicResource) for d in key.desired)
