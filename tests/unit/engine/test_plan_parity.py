"""``pipectl plan`` / ``pipectl diff`` show exactly the plan the controller's pass computes.

Both go through ``controller.engine.manual.preview``; the pass plans through the engine's steps.
Each case here takes a world (``world.py``: the real ``Reconciler`` over in-memory backends) in a
state where the plan is not empty, asks ``preview`` for every stage, then runs one pass and compares
with the first plan the pass computed for each stage (before it applied anything): equal, apart from
``generated_at``. Then the real typer CLI (``controller.cli.main.app``) is driven for ``plan -o json``
and ``diff`` with ``controller.wiring.build_runtime`` returning a ``Runtime`` around the world's
reconciler, so only pipectl's own narrow interfaces are stood in for (the git source's head commit
and checkout).

- a stage in the middle of a blue/green switch: green started and soaking, the serving view still
  on blue, and a topic config changed out of band;
- a release whose SQL transform reads (``ref``) the table of the release it ``dependsOn``: the
  upstream's served relation and version land in the transform resource, and a new upstream
  version changes the plan;
- a rollback's restore waiting for Airflow: what the restore still has to change.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from controller import wiring
from controller.cli.main import app
from controller.engine.manual import preview
from controller.model.reasons import Phase, Reason, Verdict
from controller.plan.actions import Op, Plan
from controller.plan.resources import ResourceKind, TransformResource
from tests.unit.engine.world import (
    DAILY,
    DAILY_SQL,
    DAILY_YAML,
    RELEASE,
    STAGES,
    World,
    job,
    release_yaml,
    repo_files,
    view,
)

TOPIC_CONFIG = "replicationFactor: 1\n      config: {retention.ms: '86400000'}\n      valueSchema: event"


def with_topic_config(version: str) -> str:
    return release_yaml(version).replace("replicationFactor: 1\n      valueSchema: event", TOPIC_CONFIG)


DAILY_TRANSFORM = "reports.metrics_daily"


pytestmark = pytest.mark.usefixtures("quiet_logs")


# --- the pass's plans and the preview's ---------------------------------------------------------


class FirstPlans(dict[tuple[str, str], Plan]):
    """``StageOps.last_plans`` keeping the first plan computed per (release, stage): what the pass
    planned for the stage before it applied anything."""

    def __setitem__(self, key: tuple[str, str], value: Plan) -> None:
        if key not in self:
            super().__setitem__(key, value)


def comparable(plan: Plan | dict[str, Any]) -> dict[str, Any]:
    doc = plan.model_dump(mode="json") if isinstance(plan, Plan) else dict(plan)
    doc.pop("generated_at")
    return doc


def previews(w: World, name: str) -> dict[str, Plan]:
    assert w.snap is not None
    return {stage: preview(w.reconciler, w.snap, name, stage) for stage in STAGES}


def planned_by_the_pass(w: World, name: str) -> dict[str, Plan]:
    """One pass over ``name``; the first plan it computed for each stage it planned."""
    first = FirstPlans()
    w.reconciler.ops.last_plans = first
    res = w.reconcile(name)
    assert not res.errors, res.errors
    return {stage: plan for (rel, stage), plan in first.items() if rel == name}


def assert_parity(before: dict[str, Plan], planned: dict[str, Plan], stage: str) -> Plan:
    """Every stage the pass planned was previewed as exactly that plan; ``stage``'s is not empty."""
    assert stage in planned and planned[stage].actions, planned
    for s, plan in planned.items():
        assert comparable(before[s]) == comparable(plan), s
    return planned[stage]


# --- the CLI over the world ---------------------------------------------------------------------


class WorldSource:
    """What the one-shot verbs use of ``GitSource``: the head commit and its checkout."""

    def __init__(self, w: World):
        self.w = w

    def resolve(self) -> str:
        assert self.w.head is not None
        return self.w.head

    def checkout(self, commit: str) -> SimpleNamespace:
        return SimpleNamespace(root=self.w.commits[commit])


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """``cli(world, *args)``: ``pipectl *args`` with the world as the runtime."""
    for var in ("PIPECTL_REPO", "PIPECTL_STATE", "PIPECTL_SERVER", "PIPECTL_CONTEXT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIPECTL_CONFIG", str(tmp_path / "no-config.yaml"))

    def run(w: World, *args: str) -> Any:
        def build_runtime(repo: str, state_url: str, **_: Any) -> wiring.Runtime:
            source: Any = WorldSource(w)
            return wiring.Runtime(w.store, w.ledger, source, None, w.reconciler)  # type: ignore[arg-type]

        monkeypatch.setattr(wiring, "build_runtime", build_runtime)
        where = ["--repo", str(w.tmp / "repo"), "--state", f"sqlite:///{w.tmp}/cli-unused.db"]
        return CliRunner().invoke(app, [*args, *where])

    return run


def assert_cli_parity(cli: Any, w: World, name: str, stage: str, expected: Plan, drift_line: str) -> None:
    shown = cli(w, "plan", name, "--stage", stage, "-o", "json")
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.stdout)
    assert doc["actions"] == comparable(expected)["actions"]
    assert comparable(doc) == comparable(expected)
    diff = cli(w, "diff", name, "--stage", stage)
    assert diff.exit_code == 2, diff.output
    assert drift_line in diff.stdout.splitlines(), diff.stdout


# --- (a) the middle of a blue/green switch, with drift -------------------------------------------


@pytest.fixture
def mid_switch(tmp_path: Path) -> World:
    """1.0.0 everywhere (its topic declares retention.ms); 1.1.0 committed and deployed at dev:
    green started beside blue, soaking, the serving view still on blue."""
    w = World(tmp_path)
    files = repo_files()
    files[f"releases/{RELEASE}.yaml"] = with_topic_config("1.0.0")
    w.commit(files)
    w.promote_everywhere("1.0.0")
    w.clock.advance(w.bake_seconds + 1)
    w.reconcile()
    v2 = with_topic_config("1.1.0")
    w.commit({"jobs/metrics_agg.py": "print('aggregate v2')\n", f"releases/{RELEASE}.yaml": v2})
    w.clock.advance(30)
    w.reconcile()
    dev = w.at("dev")
    st = w.stage("dev")
    assert (st.version, st.phase) == ("1.1.0", Phase.VERIFYING) and "soaking" in (st.message or "")
    assert dev.spark.running() == {job("dev", "1.0.0"), job("dev", "1.1.0")}
    assert dev.view(view("dev")).target.endswith("__v1_0_0")
    return w


def test_plan_and_diff_equal_the_pass_in_the_middle_of_a_blue_green_switch(
    mid_switch: World, cli: Any
) -> None:
    w = mid_switch
    kafka = w.at("dev").kafka
    key = (ResourceKind.TOPIC, "dev.telemetry.metrics_events")
    topic = kafka.live[key]
    kafka.live[key] = topic.model_copy(update={"config": {"retention.ms": "3600000"}})  # out of band
    w.clock.advance(5)
    line = "topic dev.telemetry.metrics_events config.retention.ms: 3600000 → 86400000"
    assert_cli_parity(cli, w, RELEASE, "dev", preview(w.reconciler, w.snap, RELEASE, "dev"), line)

    before = previews(w, RELEASE)
    planned = planned_by_the_pass(w, RELEASE)
    plan = assert_parity(before, planned, "dev")
    assert [(a.kind, a.name, a.op) for a in plan.actions] == [
        (ResourceKind.TOPIC, "dev.telemetry.metrics_events", Op.UPDATE)
    ]
    assert set(planned) == set(STAGES)  # dev deploys, the later stages hold their known good
    # the pass repaired the drift and the switch goes on: green soaking, the view still on blue
    assert kafka.live[key].config == {"retention.ms": "86400000"}
    assert w.stage("dev").phase is Phase.VERIFYING
    assert w.at("dev").view(view("dev")).target.endswith("__v1_0_0")


# --- (b) a transform reading the table of the release it dependsOn ---------------------------------


@pytest.fixture
def downstream(tmp_path: Path) -> World:
    """``metrics`` 1.0.0 everywhere, then ``daily`` (dependsOn metrics; one table transform reading
    ``ref('telemetry.metrics_1m')``) committed beside it."""
    w = World(tmp_path)
    w.commit(repo_files())
    w.promote_everywhere("1.0.0")
    w.commit({"releases/daily.yaml": DAILY_YAML, "transforms/metrics_daily.sql": DAILY_SQL})
    return w


def transform_action(plan: Plan) -> TransformResource:
    [action] = [a for a in plan.actions if a.kind == ResourceKind.TRANSFORM]
    assert isinstance(action.desired, TransformResource)
    return action.desired


def test_plan_and_diff_equal_the_pass_for_a_transform_reading_its_upstreams_table(
    downstream: World, cli: Any
) -> None:
    w = downstream
    first = preview(w.reconciler, w.snap, DAILY, "dev")
    line = "transform dev_reports.metrics_daily materialized: (none) → table"
    assert_cli_parity(cli, w, DAILY, "dev", first, line)

    before = previews(w, DAILY)
    plan = assert_parity(before, planned_by_the_pass(w, DAILY), "dev")
    t = transform_action(plan)
    [upstream] = t.upstream
    assert (upstream.ref, upstream.relation) == ("telemetry.metrics_1m", "dev_telemetry.metrics")
    assert upstream.digest == "dev_telemetry.metrics_1m__v1_0_0@1.0.0"  # served table and version
    assert t.digest and w.at("dev").transforms.get(ResourceKind.TRANSFORM, t.name) is not None
    w.run_until(lambda: w.succeeded_everywhere("1.0.0", DAILY), name=DAILY)

    # metrics 1.1.0 reaches dev: daily's transform there reads a new upstream version
    w.commit(
        {"jobs/metrics_agg.py": "print('aggregate v2')\n", f"releases/{RELEASE}.yaml": release_yaml("1.1.0")}
    )
    w.run_until(lambda: w.stage("dev").version == "1.1.0" and w.stage("dev").phase is Phase.SUCCEEDED)
    w.clock.advance(30)
    before = previews(w, DAILY)
    changed = before["dev"]
    t = transform_action(changed)
    assert [u.digest for u in t.upstream] == ["dev_telemetry.metrics_1m__v1_1_0@1.1.0"]
    assert "upstream telemetry.metrics_1m changed to v1_1_0" in changed.actions[0].reason
    line = "transform dev_reports.metrics_daily upstream.telemetry.metrics_1m: v1_0_0 → v1_1_0"
    assert_cli_parity(cli, w, DAILY, "dev", changed, line)
    plan = assert_parity(before, planned_by_the_pass(w, DAILY), "dev")
    assert [(a.kind, a.op) for a in plan.actions] == [(ResourceKind.TRANSFORM, Op.UPDATE)]


# --- (c) a rollback's restore under way ------------------------------------------------------------


def test_plan_during_a_restore_is_what_the_restore_still_changes(tmp_path: Path, cli: Any) -> None:
    w = World(tmp_path)
    w.commit(repo_files())
    w.promote_everywhere("1.0.0")
    w.commit({"dags/metrics_daily.py": "DAG = 'v2'\n", f"releases/{RELEASE}.yaml": release_yaml("1.1.0")})
    w.gates.set("dev", "keeps-up", Verdict.FAIL, "lagging")
    w.at("dev").airflow.delay = 45.0  # the restored DAG file shows up in Airflow 45 s later
    w.run_until(lambda: w.stage("dev").reason == Reason.ROLLING_BACK, max_passes=6)
    w.clock.advance(5)

    before = previews(w, RELEASE)
    plan = assert_parity(before, planned_by_the_pass(w, RELEASE), "dev")
    # the known good DAG (not visible yet), then the failed version's job (a later wave)
    assert [(a.kind, a.name, a.op) for a in plan.actions] == [
        (ResourceKind.DAG, "metrics_daily__dev", Op.UPDATE),
        (ResourceKind.STREAMING_JOB, job("dev", "1.1.0"), Op.DELETE),
    ]
    assert w.stage("dev").reason == Reason.ROLLING_BACK
    shown = cli(w, "plan", RELEASE, "--stage", "dev", "-o", "json")
    assert comparable(json.loads(shown.stdout)) == comparable(plan)
