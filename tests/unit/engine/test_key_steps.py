"""Key-subset canary serving through the real ``Reconciler`` over ``world.py``'s fakes: a release
whose job is ``strategy: canary`` with ``keys`` steps prod's serving view through 10 → 50 → 100 %
with gates at each step, then promotes; a failed gate moves the view back to 0 % (every key from the
stable version); a pass that crashes after recording a step resumes at that same step."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.audit.ledger import GateVerdict
from controller.engine.gate_request import GateRequest
from controller.model.errors import PermanentBackendError
from controller.model.reasons import Phase, Verdict
from controller.plan.actions import DiffContext
from controller.plan.keysplit import KeyFilter, pick_keys
from controller.plan.resources import ResourceKind
from controller.plan.rules.hive import diff_view
from controller.store.rollout import RolloutStore
from tests.unit.engine.world import RELEASE, World, job, release_yaml, repo_files, table, view

pytestmark = pytest.mark.usefixtures("quiet_logs")

HOSTS = [f"host-{i:02d}" for i in range(40)]
KEYED = "      strategy: canary\n      keys: {columns: [host], steps: [10, 50, 100]}\n"


def keyed_release(version: str) -> dict[str, str]:
    text = release_yaml(version).replace("      strategy: blueGreen\n", KEYED)
    return {f"releases/{RELEASE}.yaml": text, "jobs/metrics_agg.py": f"print('aggregate {version}')\n"}


@pytest.fixture
def w(tmp_path: Path) -> World:
    """1.0.0 (keyed) Succeeded everywhere: the first version has no stable one to share keys with."""
    world = World(tmp_path)
    world.commit({**repo_files(), **keyed_release("1.0.0")})
    world.promote_everywhere("1.0.0")
    assert world.at("prod").view(view("prod")).key_split is None
    world.commit(keyed_release("1.1.0"))
    world.at("prod").presto.rows = [(h,) for h in HOSTS]  # the stable table's distinct keys
    return world


def percent(w: World) -> int | None:
    split = w.at("prod").view(view("prod")).key_split
    return None if split is None else split.percent


def recorded(w: World) -> int | None:
    step = RolloutStore(w.store).stage(RELEASE, "prod").key_step
    return None if step is None else step.percent


def to_first_step(w: World) -> None:
    """At 10 %, the canary's rows seen served (the pass after the step: the fake answers rows)."""
    w.run_until(lambda: percent(w) == 10)
    assert (w.stage("prod").phase, w.stage("prod").version) == (Phase.VERIFYING, "1.1.0")
    assert "serving 10% of keys (host, 4 listed) from 1.1.0" in (w.stage("prod").message or "")
    w.clock.advance(10)
    w.reconcile()
    assert percent(w) == 10
    assert "10% of keys from 1.1.0: its rows from " in (w.stage("prod").message or "")
    assert "are served; gates run again" in (w.stage("prod").message or "")


def test_a_step_holds_until_the_view_serves_the_canarys_rows(w: World) -> None:
    """Gates passing before the canary has rows from its cutover on judge nothing it serves: the
    first step holds, then, once rows are seen, holds one more pass so gates judge served rows."""
    w.run_until(lambda: percent(w) == 10)
    presto = w.at("prod").presto
    presto.by_op["key_step_served"] = []
    for _ in range(3):
        w.clock.advance(10)
        w.reconcile()
        assert percent(w) == 10 and recorded(w) == 10
        assert "10% of keys from 1.1.0: waiting for its rows from " in (w.stage("prod").message or "")
    step = RolloutStore(w.store).stage(RELEASE, "prod").key_step
    assert step is not None and step.served_at is None
    del presto.by_op["key_step_served"]
    w.clock.advance(10)
    w.reconcile()  # seen served: recorded, one more pass of gates at 10 %
    step = RolloutStore(w.store).stage(RELEASE, "prod").key_step
    assert step is not None and step.served_at == w.clock.now and percent(w) == 10
    checks = presto.stats.calls.get("key_step_served", 0)
    w.clock.advance(10)
    w.reconcile()
    assert percent(w) == 50
    assert presto.stats.calls.get("key_step_served", 0) == checks  # later steps start served


def test_steps_move_the_view_then_promotion_serves_every_key_from_the_new_version(w: World) -> None:
    asked: list[KeyFilter | None] = []
    evaluate = w.gates.evaluate

    def recording(req: GateRequest) -> list[GateVerdict]:
        if req.stage == "prod" and req.release.spec.version == "1.1.0":
            asked.append(req.canary_keys)
        return evaluate(req)

    w.gates.evaluate = recording  # type: ignore[method-assign]
    to_first_step(w)
    split = w.at("prod").view(view("prod")).key_split
    assert split is not None and split.columns == ["host"]
    # canary keys: the stable table before the new version's cutover minute, the new one from it on
    assert [s.table for s in split.segments] == [table("prod", "1.0.0"), table("prod", "1.1.0")]
    assert split.segments[1].since is not None
    assert w.at("prod").view(view("prod")).target == table("prod", "1.0.0")  # the other keys
    seen = [10]
    for _ in range(4):
        w.clock.advance(10)
        w.reconcile()
        seen.append(percent(w) or 0)
        if w.stage("prod").phase is Phase.SUCCEEDED:
            break
    assert seen[:3] == [10, 50, 100]
    assert (w.stage("prod").phase, w.known_good("prod")) == (Phase.SUCCEEDED, "1.1.0")
    assert recorded(w) is None
    # the view at 100 % is the switched blue/green view (same SQL): promotion replaces nothing, and
    # the stage's segments now say so, with the cutover minute of the first step
    served = w.at("prod").view(view("prod"))
    switched = served.model_copy(
        update={"key_split": None, "segments": split.segments, "target": table("prod", "1.1.0")}
    )
    assert diff_view(switched, served, DiffContext()) == []
    assert RolloutStore(w.store).stage(RELEASE, "prod").segments == {"telemetry.metrics": split.segments}
    prod_gates = [r for r in w.history() if r["stage"] == "prod" and r["version"] == "1.1.0"]
    # gates ran before the first step, at 10 % twice (the canary's rows first seen served, then
    # judged served), then at 50 % and 100 %
    assert len(prod_gates) == 5
    # the canary comparison reads only the keys the canary serves at each step
    # the keys listed at each step (exactly 4, then 20 of the 40 hosts, the first 4 kept), then all
    assert [a if a is None else (a[0], len(a[1]) if isinstance(a[1], tuple) else a[1]) for a in asked] == [
        None,
        (("host",), 4),
        (("host",), 4),
        (("host",), 20),
        (("host",), 100),
    ]
    assert asked[1] is not None and asked[3] is not None
    assert set(asked[1][1]) <= set(asked[3][1])  # type: ignore[arg-type]
    assert asked[1][1] == tuple(pick_keys(["host"], HOSTS, 10) or ())


def test_a_failed_gate_between_steps_moves_the_view_back_to_zero(w: World) -> None:
    to_first_step(w)
    w.clock.advance(10)
    w.reconcile()
    assert percent(w) == 50
    w.gates.set("prod", "keeps-up", Verdict.FAIL, "lag 900s")
    w.run_until(lambda: w.stage("prod").phase is Phase.ROLLED_BACK)
    served = w.at("prod").view(view("prod"))
    assert served.key_split is None and served.target == table("prod", "1.0.0") and not served.segments
    assert recorded(w) is None and w.known_good("prod") == "1.0.0"
    assert job("prod", "1.1.0") not in w.at("prod").spark.running()


def test_a_crash_after_recording_a_step_resumes_at_that_step(w: World) -> None:
    to_first_step(w)
    hive = w.at("prod").hive
    hive.fail[view("prod")] = PermanentBackendError("hive", "metastore went away")
    w.clock.advance(10)
    w.reconcile()  # the step to 50 % is recorded, the view could not move
    assert (recorded(w), percent(w)) == (50, 10)
    del hive.fail[view("prod")]
    w.clock.advance(10)
    w.reconcile()  # the deploy converges the recorded step first, then its gates pass
    assert recorded(w) in (50, 100) and percent(w) == recorded(w)
    assert w.at("prod").hive.get(ResourceKind.VIEW, view("prod")).key_split is not None


def test_a_pause_holds_each_step_while_gates_run(tmp_path: Path) -> None:
    """``keys.pause: 1m``: each step is held a minute once it serves (the first from when its rows
    were seen), gates running on every pass meanwhile; the pass asks to come back when it ends."""
    world = World(tmp_path)
    paused = KEYED.replace("steps: [10, 50, 100]}", "steps: [10, 50, 100], pause: 1m}")

    def release(version: str) -> dict[str, str]:
        return {k: v.replace(KEYED, paused) for k, v in keyed_release(version).items()}

    world.commit({**repo_files(), **release("1.0.0")})
    world.promote_everywhere("1.0.0")
    world.commit(release("1.1.0"))
    world.at("prod").presto.rows = [(h,) for h in HOSTS]
    to_first_step(world)
    gates = len(world.history())
    res = world.reconcile()  # 0 s into the pause
    assert percent(world) == 10 and "held 1m per step, until " in (world.stage("prod").message or "")
    assert res.requeue_after is not None and res.requeue_after <= 10
    world.clock.advance(50)
    world.reconcile()
    assert percent(world) == 10 and len(world.history()) == gates + 2  # gates ran at each held pass
    world.clock.advance(10)
    world.reconcile()
    assert percent(world) == 50
    world.clock.advance(30)
    world.reconcile()
    assert percent(world) == 50 and "50% of keys from 1.1.0: held 1m" in (world.stage("prod").message or "")
    world.clock.advance(30)
    world.reconcile()
    assert percent(world) == 100
