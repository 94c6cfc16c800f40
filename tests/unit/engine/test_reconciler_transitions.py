"""Rollout transitions through the real ``Reconciler`` over in-memory fakes (``world.py``).

Each test drives passes the way the controller does (a pass, the clock advanced, the next pass)
and asserts the state of the world afterwards: the fakes' live objects, the ``ReleaseStatus`` of
each stage (phase, version, reason, message), the store's known good, audit records and history
rows. Which backend calls were made is never asserted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.engine.passes import Result
from controller.engine.reconciler import ERROR_RETRY
from controller.engine.restore import RESTORE_DEADLINE
from controller.model.errors import (
    ConfigurationError,
    PermanentBackendError,
    TransientBackendError,
)
from controller.model.reasons import Phase, Reason, Verdict
from controller.plan.desired import digest
from controller.plan.resources import ResourceKind
from tests.unit.engine.world import (
    RELEASE,
    SCHEMA,
    STAGES,
    World,
    dag,
    job,
    release_yaml,
    repo_files,
    table,
    view,
)

V1_DAG, V2_DAG = "DAG = 'v1'\n", "DAG = 'v2'\n"
V2_FILES = {"jobs/metrics_agg.py": "print('aggregate v2')\n", "dags/metrics_daily.py": V2_DAG}


def installation_of(stage: str) -> str:
    return "prod" if stage == "canary" else stage


def commit_v2(w: World, version: str = "1.1.0", **release: Any) -> None:
    w.commit({**V2_FILES, f"releases/{RELEASE}.yaml": release_yaml(version, **release)})


def at(w: World, stage: str, version: str, phase: Phase, reason: str | None = None) -> bool:
    st = w.stage(stage)
    return st.version == version and st.phase is phase and (reason is None or st.reason == reason)


def decided(w: World, stage: str, version: str) -> bool:
    """``version``'s gates at ``stage`` came to a verdict (whichever)."""
    st = w.stage(stage)
    return st.version == version and st.phase not in (Phase.PENDING, Phase.PROGRESSING, Phase.VERIFYING)


def assert_serves(w: World, inst: str, version: str, dag_source: str) -> None:
    """The installation runs and serves exactly ``version`` (one job, view on its table, its DAG)."""
    i = w.at(inst)
    assert i.spark.running() == {job(inst, version)}
    assert i.view(view(inst)).target == table(inst, version)
    d = i.dag(dag(inst))
    assert (d.version, d.source_digest) == (version, digest(dag_source.encode()))


pytestmark = pytest.mark.usefixtures("quiet_logs")


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(tmp_path)
    w.commit(repo_files())
    return w


@pytest.fixture(scope="module")
def promoted(tmp_path_factory: pytest.TempPathFactory) -> World:
    w = World(tmp_path_factory.mktemp("promoted"))
    w.commit(repo_files())
    w.promote_everywhere("1.0.0")
    return w


@pytest.fixture
def live(promoted: World, tmp_path: Path) -> World:
    """1.0.0 Succeeded at every stage (a copy of one world promoted once per module)."""
    return promoted.clone(tmp_path / "world")


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """Fail the test if anything sleeps in the pass (a wait must be a requeue)."""
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        raise AssertionError(f"a pass slept {seconds}s instead of requeueing")

    monkeypatch.setattr(time, "sleep", sleep)
    yield slept


# --- promotion ---------------------------------------------------------------------------------


def test_a_new_release_is_promoted_dev_staging_canary_prod_when_gates_pass(world: World) -> None:
    results = world.promote_everywhere("1.0.0")

    # one stage at a time, in rollout order, each with its gates judged once
    rows = world.history()
    assert [(r["stage"], r["version"], r["outcome"]) for r in rows] == [
        (s, "1.0.0", "Succeeded") for s in STAGES
    ]
    assert [g["name"] for g in rows[2]["gates"]] == ["keeps-up", "matches-baseline"]
    assert [(r["stage"], r["outcome"]) for r in world.audit("promotion")] == [
        (s, "succeeded") for s in STAGES
    ]
    assert {s: world.known_good(s) for s in STAGES} == dict.fromkeys(STAGES, "1.0.0")
    for inst in ("dev", "staging", "prod"):
        assert_serves(world, inst, "1.0.0", V1_DAG)
    st = world.status()
    assert (st.phase, st.version, st.current_stage) == (Phase.SUCCEEDED, "1.0.0", "prod")
    ready = world.ready()
    assert (ready.status, ready.reason) == ("True", Reason.RECONCILIATION_SUCCEEDED)
    # waiting for a soak or a next stage is a requeue; the passes that promoted asked to go on at once
    assert {r.requeue_after for r in results[:-1]} <= {0.0, 5.0}

    # converged: a further pass changes nothing and leaves the next visit to the interval
    world.clock.advance(30)
    before = world.objects()
    res = world.reconcile()
    assert (res.changed, res.requeue_after, res.errors) == (False, None, [])
    assert world.objects() == before


def test_the_next_version_switches_views_blue_green_and_stops_blue_after_the_bake(live: World) -> None:
    w = live
    commit_v2(w)
    w.run_until(lambda: at(w, "prod", "1.1.0", Phase.SUCCEEDED))

    prod = w.at("prod")
    # blue keeps running through the bake; the serving view stitches blue's history and green's
    assert prod.spark.running() == {job("prod", "1.0.0"), job("prod", "1.1.0")}
    segments = prod.view(view("prod")).segments
    assert [s.table for s in segments] == [table("prod", "1.0.0"), table("prod", "1.1.0")]
    assert segments[0].since is None and segments[1].since is not None
    assert prod.dag(dag("prod")).version == "1.1.0"
    assert w.stage("prod").previous_version == "1.0.0"
    assert {s: w.known_good(s) for s in STAGES} == dict.fromkeys(STAGES, "1.1.0")

    w.clock.advance(w.bake_seconds + 1)
    w.reconcile()
    for inst in ("dev", "staging", "prod"):
        assert w.at(inst).spark.running() == {job(inst, "1.1.0")}, inst
        assert w.stage(inst).previous_version is None
    assert w.succeeded_everywhere("1.1.0")


def test_the_canary_job_becomes_prods_green_without_a_restart(live: World) -> None:
    """The canary runs the new version in prod's namespace (``prod-…-v1-1-0``); on promotion the
    very same job is prod's green: it keeps its start position and is never restarted."""
    w = live
    commit_v2(w)
    w.run_until(lambda: at(w, "canary", "1.1.0", Phase.SUCCEEDED))
    green = job("prod", "1.1.0")
    assert w.at("prod").spark.starts[green] == 1
    w.run_until(lambda: at(w, "prod", "1.1.0", Phase.SUCCEEDED), max_passes=6)
    for _ in range(3):  # in-sync passes of canary and prod afterwards
        w.clock.advance(30)
        w.reconcile()
    assert w.at("prod").spark.starts[green] == 1


# --- approval ------------------------------------------------------------------------------------


def test_prod_with_approval_promotion_waits_until_an_approval_is_stored(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.commit(repo_files(prod_promotion="approval"))
    w.run_until(lambda: at(w, "canary", "1.0.0", Phase.SUCCEEDED))
    for _ in range(3):
        w.clock.advance(600)
        res = w.reconcile()
        prod = w.stage("prod")
        assert (prod.phase, prod.reason) == (Phase.PENDING, Reason.AWAITING_APPROVAL)
        assert "pipectl approve" in (prod.message or "")
        assert res.requeue_after == 5.0 and not res.errors
    assert (w.ready().status, w.ready().reason) == ("False", Reason.AWAITING_APPROVAL)
    assert w.known_good("prod") is None
    assert w.at("prod").hive.get(ResourceKind.VIEW, view("prod")) is None  # nothing serves yet
    assert w.at("prod").airflow.get(ResourceKind.DAG, dag("prod")) is None

    w.approve("prod", "alice")
    w.run_until(lambda: at(w, "prod", "1.0.0", Phase.SUCCEEDED))
    assert w.known_good("prod") == "1.0.0"
    assert_serves(w, "prod", "1.0.0", V1_DAG)

    # an approval is for one version: 1.1.0 waits again, prod held on 1.0.0
    commit_v2(w)
    w.run_until(lambda: at(w, "canary", "1.1.0", Phase.SUCCEEDED))
    w.clock.advance(30)
    w.reconcile()
    assert at(w, "prod", "1.0.0", Phase.PENDING, Reason.AWAITING_APPROVAL)
    assert w.at("prod").view(view("prod")).target == table("prod", "1.0.0")
    w.approve("prod", "bob")
    w.run_until(lambda: at(w, "prod", "1.1.0", Phase.SUCCEEDED))
    assert w.known_good("prod") == "1.1.0"


# --- rollback ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "gate"),
    [("dev", "keeps-up"), ("staging", "keeps-up"), ("canary", "matches-baseline")],
)
def test_a_failing_gate_rolls_the_stage_back_to_its_known_good(live: World, stage: str, gate: str) -> None:
    w = live
    commit_v2(w)
    w.gates.set(stage, gate, Verdict.FAIL, "totals differ by 25%")
    w.run_until(lambda: decided(w, stage, "1.1.0"))

    st = w.stage(stage)
    assert (st.phase, st.reason, st.version) == (Phase.ROLLED_BACK, Reason.GATE_FAILED, "1.1.0")
    assert f"gate {gate} failed: totals differ by 25%" in (st.message or "")
    assert "restored 1.0.0" in (st.message or "")
    assert w.known_good(stage) == "1.0.0"
    # live objects back on the known good (the canary runs in prod's installation)
    inst = installation_of(stage)
    assert_serves(w, inst, "1.0.0", V1_DAG)
    assert w.at(inst).view(view(inst)).segments == []
    # later stages never saw 1.1.0; prod stays on the old version
    later = STAGES[STAGES.index(stage) + 1 :]
    for s in later:
        assert at(w, s, "1.0.0", Phase.SUCCEEDED), s
    assert_serves(w, "prod", "1.0.0", V1_DAG)
    # one audit record and one history row say what happened
    [rb] = w.audit("rollback")
    assert (rb["stage"], rb["version"], rb["outcome"]) == (stage, "1.1.0", "rolledBack")
    assert {(g["name"], g["verdict"]) for g in rb["gates"]} >= {(gate, "fail")}
    last = w.history()[-1]
    assert (last["stage"], last["version"], last["outcome"]) == (stage, "1.1.0", "RolledBack")
    assert (w.ready().status, w.ready().reason) == ("False", Reason.GATE_FAILED)

    # halted: later passes hold the known good and change nothing until a new version
    before = w.objects()
    for _ in range(3):
        w.clock.advance(30)
        assert not w.reconcile().errors
    assert w.objects() == before
    assert w.stage(stage).phase is Phase.ROLLED_BACK
    assert len(w.audit("rollback")) == 1


def test_a_canary_rollback_of_the_next_version_leaves_prods_running_green_alone(live: World) -> None:
    """1.1.0 serves in prod (its job started by the canary); 1.2.0 fails at canary: the canary's
    restore converges 1.1.0 there on the very job prod runs, which must not be touched."""
    w = live
    commit_v2(w)
    w.promote_everywhere("1.1.0")
    w.clock.advance(w.bake_seconds + 1)
    w.reconcile()
    prod = w.at("prod")
    assert prod.spark.running() == {job("prod", "1.1.0")} and prod.spark.starts[job("prod", "1.1.0")] == 1
    serving = prod.view(view("prod"))

    w.commit(
        {"jobs/metrics_agg.py": "print('aggregate v3')\n", f"releases/{RELEASE}.yaml": release_yaml("1.2.0")}
    )
    w.gates.set("canary", "matches-baseline", Verdict.FAIL, "totals differ by 25%")
    w.run_until(lambda: decided(w, "canary", "1.2.0"))
    assert at(w, "canary", "1.2.0", Phase.ROLLED_BACK)
    assert "restored 1.1.0" in (w.stage("canary").message or "")
    for _ in range(2):
        w.clock.advance(30)
        w.reconcile()
    assert prod.spark.running() == {job("prod", "1.1.0")}
    assert prod.spark.starts[job("prod", "1.1.0")] == 1
    assert prod.view(view("prod")) == serving
    assert at(w, "prod", "1.1.0", Phase.SUCCEEDED)


def assert_canary_stands_down(w: World, version: str, held: str) -> None:
    """Passes after prod rolled ``version`` back: the canary (which ran ``version`` in prod's
    namespace) stops deploying it and holds prod's known good ``held``; nothing is started, stopped
    or recorded again, pass after pass."""
    prod = w.at("prod")
    assert prod.spark.running() == {job("prod", held)}
    before, starts, records = w.objects(), dict(prod.spark.starts), len(w.audit())
    for _ in range(3):
        w.clock.advance(30)
        res = w.reconcile()
        assert not res.errors
        assert prod.spark.starts == starts, "the failed version's job was started again"
        assert w.objects() == before and len(w.audit()) == records
        canary = w.stage("canary")
        assert (canary.version, canary.phase, canary.reason) == (
            version,
            Phase.ROLLED_BACK,
            Reason.TARGET_ROLLED_BACK,
        )
        assert f"holding prod's known good {held}" in (canary.message or "")
        assert at(w, "prod", version, Phase.ROLLED_BACK)
    assert w.known_good("canary") == w.known_good("prod") == held
    st = w.status()
    assert (st.phase, st.current_stage) == (Phase.ROLLED_BACK, "prod")  # where the version failed


def test_after_a_prod_rollback_the_failed_version_stays_stopped(live: World) -> None:
    w = live
    commit_v2(w)
    w.gates.set("prod", "keeps-up", Verdict.FAIL, "lag 300s")
    w.run_until(lambda: decided(w, "prod", "1.1.0"))
    assert at(w, "prod", "1.1.0", Phase.ROLLED_BACK)
    assert_canary_stands_down(w, "1.1.0", "1.0.0")
    [rb] = w.audit("rollback")
    assert rb["stage"] == "prod"

    # a new version moves the canary again: it deploys 1.2.0 beside prod's 1.0.0, never 1.1.0
    w.gates.clear()
    w.commit(
        {"jobs/metrics_agg.py": "print('aggregate v3')\n", f"releases/{RELEASE}.yaml": release_yaml("1.2.0")}
    )
    w.gates.set("canary", "matches-baseline", Verdict.FAIL, "totals differ by 25%")
    w.run_until(lambda: decided(w, "canary", "1.2.0"))
    assert "restored 1.0.0" in (w.stage("canary").message or "")  # the canary's known good is prod's
    for _ in range(2):
        w.clock.advance(30)
        w.reconcile()
    assert w.at("prod").spark.running() == {job("prod", "1.0.0")}
    assert at(w, "prod", "1.1.0", Phase.ROLLED_BACK)


def test_after_a_post_promotion_rollback_the_canary_stops_the_version_too(tmp_path: Path) -> None:
    w = post_promoted(tmp_path)
    w.reconcile()
    assert at(w, "prod", "1.1.0", Phase.ROLLED_BACK, Reason.GATE_FAILED)
    assert_canary_stands_down(w, "1.1.0", "1.0.0")


def test_a_new_version_committed_right_after_a_prod_rollback_stops_the_failed_one(live: World) -> None:
    """1.2.0 arrives before any pass saw prod's rollback: while dev deploys it, the canary (not
    reached) still stands down from 1.1.0 instead of holding its own known good 1.1.0."""
    w = live
    commit_v2(w)
    w.gates.set("prod", "keeps-up", Verdict.FAIL, "lag 300s")
    w.run_until(lambda: decided(w, "prod", "1.1.0"))
    w.commit(
        {"jobs/metrics_agg.py": "print('aggregate v3')\n", f"releases/{RELEASE}.yaml": release_yaml("1.2.0")}
    )
    prod = w.at("prod")
    starts = dict(prod.spark.starts)
    for _ in range(3):
        w.clock.advance(30)
        assert not w.reconcile().errors
        assert prod.spark.running() == {job("prod", "1.0.0")} and prod.spark.starts == starts
    assert w.stage("dev").version == "1.2.0"
    assert at(w, "canary", "1.1.0", Phase.ROLLED_BACK, Reason.TARGET_ROLLED_BACK)


@pytest.mark.parametrize(
    ("stage", "backend", "name", "sabotage"),
    [
        ("dev", "airflow", dag("dev"), "fail"),  # the known good DAG cannot be redeployed
        ("dev", "airflow", dag("dev"), "ignore"),  # the backend says done and changes nothing
        ("canary", "spark", job("prod", "1.1.0"), "fail"),  # the failed version's job will not stop
    ],
)
def test_a_restore_that_does_not_happen_ends_rollback_failed(
    live: World, stage: str, backend: str, name: str, sabotage: str
) -> None:
    w = live
    gate = "matches-baseline" if stage == "canary" else "keeps-up"
    commit_v2(w)
    w.gates.set(stage, gate, Verdict.INCONCLUSIVE, "not enough windows yet")
    w.run_until(lambda: at(w, stage, "1.1.0", Phase.VERIFYING, Reason.GATE_INCONCLUSIVE))
    fake = getattr(w.at(installation_of(stage)), backend)
    if sabotage == "fail":
        fake.fail[name] = PermanentBackendError(backend, "permission denied")
    else:
        fake.ignore.add(name)
    w.gates.set(stage, gate, Verdict.FAIL, "totals differ by 25%")
    w.clock.advance(30)
    w.reconcile()

    st = w.stage(stage)
    assert (st.phase, st.reason) == (Phase.ROLLBACK_FAILED, Reason.ROLLBACK_FAILED)
    assert "rollback to 1.0.0 did not complete" in (st.message or "") and name in (st.message or "")
    assert (w.ready().status, w.ready().reason) == ("False", Reason.ROLLBACK_FAILED)
    [rb] = w.audit("rollback")
    assert (rb["outcome"], rb["reason"]) == ("failed", Reason.ROLLBACK_FAILED)
    assert all(r["outcome"] != "RolledBack" for r in w.history())
    # never reported RolledBack later either, and prod is untouched
    for _ in range(2):
        w.clock.advance(30)
        w.reconcile()
        assert w.stage(stage).phase is Phase.ROLLBACK_FAILED
    assert at(w, "prod", "1.0.0", Phase.SUCCEEDED)


def test_a_restore_the_plan_refuses_ends_rollback_failed(live: World) -> None:
    """1.1.0 grows the topic to 6 partitions; Kafka cannot shrink it back for 1.0.0's restore."""
    w = live
    w.commit(
        {
            **V2_FILES,
            f"releases/{RELEASE}.yaml": release_yaml("1.1.0").replace("partitions: 3", "partitions: 6"),
        }
    )
    w.gates.set("dev", "keeps-up", Verdict.FAIL, "lagging")
    w.run_until(lambda: decided(w, "dev", "1.1.0"))

    st = w.stage("dev")
    assert (st.phase, st.reason) == (Phase.ROLLBACK_FAILED, Reason.ROLLBACK_FAILED)
    assert "refused" in (st.message or "") and "dev.telemetry.metrics_events" in (st.message or "")
    assert Reason.PARTITION_DECREASE in (st.message or "")
    assert w.at("dev").kafka.get(ResourceKind.TOPIC, "dev.telemetry.metrics_events").partitions == 6
    [rb] = w.audit("rollback")
    assert rb["outcome"] == "failed"


GATE_5M = "      - {name: keeps-up, type: streamingHealth, inconclusiveTimeout: 5m}\n"
GATE_DEFAULT = "      - {name: keeps-up, type: streamingHealth}\n"
APPROVAL_GATE = "      - {name: keeps-up, type: approval}\n"


@pytest.mark.parametrize(
    ("gates", "minutes", "phase"),
    [
        (GATE_5M, 5, Phase.VERIFYING),
        (GATE_5M, 6, Phase.ROLLED_BACK),
        (GATE_DEFAULT, 15, Phase.VERIFYING),  # default inconclusiveTimeout: 15m
        (GATE_DEFAULT, 16, Phase.ROLLED_BACK),
        (APPROVAL_GATE, 120, Phase.VERIFYING),  # an approval gate waits for a person unless set
    ],
    ids=["5m-at-5", "5m-at-6", "default-at-15", "default-at-16", "approval-at-120"],
)
def test_an_inconclusive_gate_past_its_timeout_counts_as_failed(
    tmp_path: Path, gates: str, minutes: int, phase: Phase
) -> None:
    w = World(tmp_path)
    w.commit(repo_files(gates=gates))
    w.promote_everywhere("1.0.0")
    commit_v2(w, gates=gates)
    w.gates.set("dev", "keeps-up", Verdict.INCONCLUSIVE, "not enough batches")
    w.run_until(lambda: at(w, "dev", "1.1.0", Phase.VERIFYING, Reason.GATE_INCONCLUSIVE))
    left = minutes
    while left:  # passes at most 10 minutes apart (the controller's would be 10 s apart)
        step = min(left, 10)
        w.clock.advance(step * 60)
        res = w.reconcile()
        left -= step

    st = w.stage("dev")
    assert st.phase is phase, w.describe()
    if phase is Phase.ROLLED_BACK:
        assert "inconclusive for" in (st.message or "") and "inconclusiveTimeout" in (st.message or "")
        assert_serves(w, "dev", "1.0.0", V1_DAG)
        [rb] = w.audit("rollback")
        assert rb["gates"][0]["verdict"] == "fail"
    else:
        assert st.reason == Reason.GATE_INCONCLUSIVE
        assert res.requeue_after == 10.0  # the verify interval
        assert w.known_good("dev") == "1.0.0" and not w.audit("rollback")


def test_time_a_gate_cannot_reach_its_backend_does_not_count_toward_its_timeout(tmp_path: Path) -> None:
    """A 30-minute Presto outage under a 5m inconclusiveTimeout: the stage waits, naming the outage;
    the gate's clock starts when Presto answers again, and only then can the timeout fail it."""
    w = World(tmp_path)
    w.commit(repo_files(gates=GATE_5M))
    w.promote_everywhere("1.0.0")
    commit_v2(w, gates=GATE_5M)
    w.gates.set("dev", "keeps-up", Verdict.INCONCLUSIVE, "presto: connection refused", unavailable=("presto",))
    w.run_until(lambda: at(w, "dev", "1.1.0", Phase.VERIFYING, Reason.BACKEND_UNAVAILABLE))

    def minutes(n: int) -> None:
        for _ in range(n):
            w.clock.advance(60)
            w.reconcile()

    minutes(30)
    st = w.stage("dev")
    assert (st.phase, st.reason) == (Phase.VERIFYING, Reason.BACKEND_UNAVAILABLE), w.describe()
    assert "presto unavailable" in (st.message or "")
    assert not w.audit("rollback")

    w.gates.set("dev", "keeps-up", Verdict.INCONCLUSIVE, "not enough batches")  # Presto is back
    minutes(5)
    assert at(w, "dev", "1.1.0", Phase.VERIFYING, Reason.GATE_INCONCLUSIVE), w.describe()
    minutes(2)
    st = w.stage("dev")
    assert st.phase is Phase.ROLLED_BACK, w.describe()
    assert "(inconclusiveTimeout 300s)" in (st.message or "")


# --- immutable versions ----------------------------------------------------------------------------

PATCHED_SCHEMA = SCHEMA.replace(
    '{"name": "ts", "type": "long"}]',
    '{"name": "ts", "type": "long"}, {"name": "x", "type": ["null", "int"], "default": null}]',
)


@pytest.mark.parametrize(
    ("path", "text", "named"),
    [
        ("dags/metrics_daily.py", "DAG = 'v1, patched'\n", "dags/metrics_daily.py"),
        ("jobs/metrics_agg.py", "print('aggregate v1, patched')\n", "jobs/metrics_agg.py"),
        ("schemas/event.avsc", PATCHED_SCHEMA, "schemas/event.avsc"),
        (f"releases/{RELEASE}.yaml", release_yaml().replace("partitions: 3", "partitions: 6"), "<manifest>"),
    ],
    ids=["dag", "job", "schema", "manifest"],
)
def test_the_same_version_with_changed_content_is_blocked_and_nothing_is_applied(
    live: World, path: str, text: str, named: str
) -> None:
    w = live
    before, audit_before = w.objects(), len(w.audit())
    stages_before = w.status().stages
    w.commit({path: text})
    for _ in range(2):
        w.clock.advance(30)
        res = w.reconcile()
        assert not res.errors
    st = w.status()
    assert st.phase is Phase.BLOCKED
    ready = w.ready()
    assert (ready.status, ready.reason) == ("False", Reason.VERSION_REUSED)
    assert "version 1.0.0" in ready.message and named in ready.message
    assert w.objects() == before
    assert st.stages == stages_before
    assert {s: w.known_good(s) for s in STAGES} == dict.fromkeys(STAGES, "1.0.0")
    assert len(w.audit()) == audit_before

    # bumping the version rolls the same content out through the gates
    w.commit(
        {
            f"releases/{RELEASE}.yaml": (text if path.startswith("releases/") else release_yaml()).replace(
                "version: 1.0.0", "version: 1.0.1"
            )
        }
    )
    w.clock.advance(30)
    w.reconcile()
    assert w.stage("dev").version == "1.0.1" and w.status().phase is not Phase.BLOCKED


# --- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (RuntimeError("boom"), Reason.RECONCILE_ERROR),
        (TransientBackendError("kafka", "broker down"), Reason.BACKEND_UNAVAILABLE),
        (PermanentBackendError("kafka", "not authorized"), Reason.APPLY_FAILED),
        (ConfigurationError("kafka: no such listener"), Reason.CONFIGURATION_ERROR),
    ],
    ids=["unexpected", "transient", "permanent", "configuration"],
)
def test_an_error_in_one_stage_is_recorded_for_it_and_the_other_stages_go_on(
    live: World, error: Exception, reason: Reason
) -> None:
    w = live
    w.at("dev").kafka.observe_error = error  # dev's Kafka (or its adapter) fails every read
    prod = w.at("prod")
    del prod.hive.live[(ResourceKind.VIEW, view("prod"))]  # and someone dropped prod's view

    t0 = time.monotonic()
    res = w.reconcile()
    assert time.monotonic() - t0 < 5.0
    assert len(res.errors) == 1 and res.errors[0].startswith("stage dev: ")
    assert res.requeue_after == ERROR_RETRY
    ready = w.ready()
    assert (ready.status, ready.reason) == ("False", reason)
    assert ready.message.startswith("stage dev: ")
    if reason is Reason.RECONCILE_ERROR:
        assert "RuntimeError: boom" in ready.message
    # the other stages were still reconciled: prod's drift is repaired in the same pass
    assert prod.view(view("prod")).target == table("prod", "1.0.0")
    assert at(w, "prod", "1.0.0", Phase.SUCCEEDED)

    w.at("dev").kafka.observe_error = None
    w.clock.advance(30)
    res = w.reconcile()
    assert not res.errors and (w.ready().status, w.ready().reason) == (
        "True",
        Reason.RECONCILIATION_SUCCEEDED,
    )


def test_an_error_that_names_its_stage_is_prefixed_once(live: World) -> None:
    """A configuration error raised while wiring a stage names it already (``stage dev:
    spec.airflow.passwordFrom: …``); the pass's own ``stage dev:`` prefix is not added again."""
    w = live
    msg = "stage dev: spec.airflow.passwordFrom: environment variable PIPECTL_SECRET_X is not set"
    w.at("dev").kafka.observe_error = ConfigurationError(msg)
    w.at("staging").kafka.observe_error = ConfigurationError("stage dev: named another stage")
    res = w.reconcile()
    assert res.errors == [msg, "stage staging: stage dev: named another stage"]
    ready = w.ready()
    assert ready.reason == Reason.CONFIGURATION_ERROR
    assert ready.message.startswith(msg + "; ") and ready.message.count("stage dev: spec.") == 1


def test_a_failing_canary_is_judged_and_rolled_back_while_dev_is_down(live: World) -> None:
    w = live
    commit_v2(w)
    w.gates.set("canary", "matches-baseline", Verdict.INCONCLUSIVE, "not enough windows yet")
    w.run_until(lambda: at(w, "canary", "1.1.0", Phase.VERIFYING, Reason.GATE_INCONCLUSIVE))
    w.at("dev").spark.observe_error = RuntimeError("spark master unreachable")
    w.gates.set("canary", "matches-baseline", Verdict.FAIL, "totals differ by 25%")
    w.clock.advance(30)
    res = w.reconcile()

    assert res.errors == ["stage dev: RuntimeError: spark master unreachable"]
    assert at(w, "canary", "1.1.0", Phase.ROLLED_BACK, Reason.GATE_FAILED)
    assert w.at("prod").spark.running() == {job("prod", "1.0.0")}
    assert at(w, "prod", "1.0.0", Phase.SUCCEEDED)
    assert (w.ready().reason, w.status().current_stage) == (Reason.RECONCILE_ERROR, "canary")


# --- dependencies ----------------------------------------------------------------------------------

COMMON = """\
apiVersion: pipectl.dev/v1alpha1
kind: PipelineRelease
metadata:
  name: common
spec:
  version: 2.0.0
  owner: platform
  topics:
    - {name: telemetry.common_events, partitions: 1, replicationFactor: 1}
  rollout:
    stages: [dev, staging, canary, prod]
"""


def test_depends_on_blocks_a_stage_until_the_upstream_succeeded_there(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.commit({**repo_files(depends_on=["common"]), "releases/common.yaml": COMMON})

    res = w.reconcile(RELEASE)
    dev = w.stage("dev")
    assert (dev.phase, dev.reason) == (Phase.BLOCKED, Reason.DEPENDENCY_NOT_READY)
    assert dev.message == "Blocked: waiting for common dev Succeeded"
    assert res.requeue_after == 15.0 and not res.errors
    assert w.objects().get("dev", {}) == {}  # nothing applied
    assert (w.ready().status, w.ready().reason) == ("False", Reason.DEPENDENCY_NOT_READY)

    w.reconcile("common")
    assert w.stage("dev", "common").phase is Phase.SUCCEEDED
    w.run_until(lambda: at(w, "dev", "1.0.0", Phase.SUCCEEDED))
    assert_serves(w, "dev", "1.0.0", V1_DAG)
    w.clock.advance(30)
    w.reconcile(RELEASE)
    staging = w.stage("staging")
    assert (staging.phase, staging.message) == (
        Phase.BLOCKED,
        "Blocked: waiting for common staging Succeeded",
    )
    assert w.at("staging").spark.running() == set()


# --- waits are requeues ------------------------------------------------------------------------------


def test_a_dag_pickup_wait_returns_requeue_after_without_sleeping(
    world: World, no_sleep: list[float]
) -> None:
    w = world
    airflow = w.at("dev").airflow
    airflow.delay, airflow.retry_after = 45.0, 4.0  # Airflow parses the new file 45 s after deploy

    for _ in range(2):
        t0 = time.monotonic()
        res = w.reconcile()
        assert time.monotonic() - t0 < 2.0
        assert (res.requeue_after, res.errors) == (4.0, [])
        dev = w.stage("dev")
        assert (dev.phase, dev.reason) == (Phase.PROGRESSING, Reason.AWAITING_BACKEND)
        assert dag("dev") in (dev.message or "")
        assert airflow.get(ResourceKind.DAG, dag("dev")) is None  # not visible yet
        w.clock.advance(30)

    w.run_until(lambda: at(w, "dev", "1.0.0", Phase.SUCCEEDED))
    assert_serves(w, "dev", "1.0.0", V1_DAG)
    assert no_sleep == []


def test_a_job_stop_wait_returns_requeue_after_without_sleeping(live: World, no_sleep: list[float]) -> None:
    w = live
    commit_v2(w)
    w.run_until(lambda: at(w, "dev", "1.1.0", Phase.SUCCEEDED))
    spark = w.at("dev").spark
    spark.delay = 25.0  # stopping blue: after its current batch
    w.clock.advance(w.bake_seconds + 1)

    res = w.reconcile()
    assert not res.errors and res.requeue_after == spark.retry_after
    assert spark.running() == {job("dev", "1.0.0"), job("dev", "1.1.0")}  # blue still finishing
    assert w.stage("dev").previous_version == "1.0.0"
    w.clock.advance(30)
    w.reconcile()
    assert spark.running() == {job("dev", "1.1.0")}
    assert w.stage("dev").previous_version is None
    assert no_sleep == []


def start_waiting_restore(w: World, stage: str = "dev", delay: float = 45.0) -> Result:
    """1.1.0 verifying at ``stage``; its gate then fails while the stage's Airflow shows the
    restored DAG file only ``delay`` seconds after it is deployed: the restore has to wait."""
    gate = "matches-baseline" if stage == "canary" else "keeps-up"
    commit_v2(w)
    w.gates.set(stage, gate, Verdict.INCONCLUSIVE, "not enough batches")
    w.run_until(lambda: at(w, stage, "1.1.0", Phase.VERIFYING, Reason.GATE_INCONCLUSIVE))
    airflow = w.at(installation_of(stage)).airflow
    airflow.delay, airflow.retry_after = delay, 4.0
    w.gates.set(stage, gate, Verdict.FAIL, "lagging")
    w.clock.advance(30)
    return w.reconcile()


def assert_restoring(w: World, stage: str, res: Result) -> None:
    st = w.stage(stage)
    assert (st.version, st.phase, st.reason) == ("1.1.0", Phase.PROGRESSING, Reason.ROLLING_BACK)
    assert "gate keeps-up failed: lagging; rolling back to 1.0.0, waiting" in (st.message or "")
    assert dag(installation_of(stage)) in (st.message or "")
    assert (res.requeue_after, res.errors) == (4.0, [])
    assert (w.status().current_stage, w.ready().reason) == (stage, Reason.ROLLING_BACK)
    assert w.audit("rollback") == [] and all(r["outcome"] != "RolledBack" for r in w.history())


def test_a_restore_that_must_wait_for_the_backend_requeues_instead_of_sleeping(
    live: World, no_sleep: list[float]
) -> None:
    w = live
    t0 = time.monotonic()
    res = start_waiting_restore(w)
    assert time.monotonic() - t0 < 5.0
    assert_restoring(w, "dev", res)
    assert w.at("dev").dag(dag("dev")).version == "1.1.0"  # Airflow still shows 1.1.0's file
    for _ in range(2):  # later passes look again, change nothing else, record nothing yet
        w.clock.advance(10)
        assert_restoring(w, "dev", w.reconcile())
    w.run_until(lambda: w.stage("dev").phase is Phase.ROLLED_BACK, step=10.0, max_passes=4)

    st = w.stage("dev")
    assert (st.reason, st.version) == (Reason.GATE_FAILED, "1.1.0")
    assert "gate keeps-up failed: lagging; restored 1.0.0" in (st.message or "")
    assert_serves(w, "dev", "1.0.0", V1_DAG)
    [rb] = w.audit("rollback")  # once, when the restore ended
    assert (rb["stage"], rb["outcome"], rb["gates"][0]["verdict"]) == ("dev", "rolledBack", "fail")
    last = w.history()[-1]
    assert (last["stage"], last["version"], last["outcome"]) == ("dev", "1.1.0", "RolledBack")
    assert w.known_good("dev") == "1.0.0"
    assert no_sleep == []
    for _ in range(2):  # halted afterwards: nothing more recorded
        w.clock.advance(30)
        w.reconcile()
    assert len(w.audit("rollback")) == 1 and w.stage("dev").phase is Phase.ROLLED_BACK


def test_a_restore_still_waiting_past_its_deadline_ends_rollback_failed(live: World) -> None:
    """The deadline counts on the controller's clock from the persisted start of the restore."""
    w = live
    res = start_waiting_restore(w, delay=10 * RESTORE_DEADLINE)
    assert_restoring(w, "dev", res)
    waited = 0.0
    while waited + 60 < RESTORE_DEADLINE:
        w.clock.advance(60)
        waited += 60
        assert_restoring(w, "dev", w.reconcile())
    w.clock.advance(RESTORE_DEADLINE - waited)
    w.reconcile()
    st = w.stage("dev")
    assert (st.phase, st.reason) == (Phase.ROLLBACK_FAILED, Reason.ROLLBACK_FAILED)
    assert "rollback to 1.0.0 did not complete: still waiting 300s" in (st.message or "")
    assert dag("dev") in (st.message or "")
    [rb] = w.audit("rollback")
    assert (rb["outcome"], rb["reason"]) == ("failed", Reason.ROLLBACK_FAILED)
    assert w.history()[-1]["outcome"] == "RollbackFailed"
    for _ in range(2):
        w.clock.advance(60)
        w.reconcile()
    assert w.stage("dev").phase is Phase.ROLLBACK_FAILED and len(w.audit("rollback")) == 1


def test_a_restore_is_resumed_by_a_restarted_controller(live: World, tmp_path: Path) -> None:
    """The controller dies during the pass that started the restore, before the stage's status was
    written: the restarted one (a new Reconciler over the same state store and backends) reads
    the restore from the stage's rollout document and finishes it."""
    w = live
    commit_v2(w)
    w.gates.set("dev", "keeps-up", Verdict.INCONCLUSIVE, "not enough batches")
    w.run_until(lambda: at(w, "dev", "1.1.0", Phase.VERIFYING, Reason.GATE_INCONCLUSIVE))
    status_before = w.store.get_status(RELEASE)
    assert status_before is not None
    w.at("dev").airflow.delay, w.at("dev").airflow.retry_after = 45.0, 4.0
    w.gates.set("dev", "keeps-up", Verdict.FAIL, "lagging")
    w.clock.advance(30)
    w.reconcile()
    assert w.stage("dev").reason == Reason.ROLLING_BACK

    restarted = w.clone(tmp_path / "restarted")
    restarted.store.put_status(RELEASE, status_before)  # the status write never happened
    assert restarted.stage("dev").phase is Phase.VERIFYING
    restarted.gates.clear()  # the gate is not asked again: the restore goes on
    res = restarted.reconcile()
    assert_restoring(restarted, "dev", res)
    restarted.run_until(lambda: restarted.stage("dev").phase is Phase.ROLLED_BACK, step=15.0, max_passes=4)
    assert_serves(restarted, "dev", "1.0.0", V1_DAG)
    [rb] = restarted.audit("rollback")
    assert rb["outcome"] == "rolledBack"
    assert [r["outcome"] for r in restarted.audit("gate") if r["version"] == "1.1.0"] == ["failed"]


def test_while_prod_restores_the_canary_does_not_start_the_version_again(live: World) -> None:
    w = live
    commit_v2(w)
    w.run_until(lambda: at(w, "canary", "1.1.0", Phase.SUCCEEDED))
    w.gates.set("prod", "keeps-up", Verdict.FAIL, "lagging")
    w.at("prod").airflow.delay, w.at("prod").airflow.retry_after = 45.0, 4.0
    w.run_until(lambda: w.stage("prod").reason == Reason.ROLLING_BACK, max_passes=6)
    prod = w.at("prod")
    starts = dict(prod.spark.starts)
    for _ in range(2):
        w.clock.advance(10)
        w.reconcile()
        assert w.stage("prod").reason == Reason.ROLLING_BACK
        assert at(w, "canary", "1.1.0", Phase.ROLLED_BACK, Reason.TARGET_ROLLED_BACK)
        assert "prod is rolling back 1.1.0" in (w.stage("canary").message or "")
        assert prod.spark.starts == starts  # nothing (re)started while prod restores
    w.run_until(lambda: w.stage("prod").phase is Phase.ROLLED_BACK, step=15.0, max_passes=4)
    assert_canary_stands_down(w, "1.1.0", "1.0.0")
    assert prod.spark.starts == starts


# --- post-promotion analysis -----------------------------------------------------------------------

POST_GATES = (
    "      - {name: keeps-up, type: streamingHealth, maxLagSeconds: 60}\n"
    "      - {name: prod-errors, type: dataQuality, stages: [prod], postPromotion: true,\n"
    '         query: "SELECT count(*) FROM telemetry.metrics_1m", expect: "> 0"}\n'
)
ANALYSIS = "    analysis: {bake: 10m}\n"


def post_promoted(tmp_path: Path) -> World:
    """1.1.0 just promoted at prod over 1.0.0, its postPromotion gate now failing (the next pass
    is within the 10m bake)."""
    w = World(tmp_path)
    w.commit(repo_files(gates=POST_GATES, rollout_extra=ANALYSIS))
    w.promote_everywhere("1.0.0")
    w.clock.advance(601)  # 1.0.0's own bake at prod is over
    w.reconcile()
    commit_v2(w, gates=POST_GATES, rollout_extra=ANALYSIS)
    w.promote_everywhere("1.1.0")
    assert w.at("prod").view(view("prod")).segments[-1].table == table("prod", "1.1.0")
    w.gates.set("prod", "prod-errors", Verdict.FAIL, "no rows in the last 5 minutes")
    w.clock.advance(120)
    return w


def test_a_post_promotion_gate_failing_during_the_bake_rolls_prod_back(tmp_path: Path) -> None:
    w = post_promoted(tmp_path)
    w.reconcile()
    st = w.stage("prod")
    assert (st.phase, st.reason) == (Phase.ROLLED_BACK, Reason.GATE_FAILED)
    assert "post-promotion gate prod-errors failed" in (st.message or "")
    assert w.known_good("prod") == "1.0.0"
    prod = w.at("prod")
    assert prod.view(view("prod")).target == table("prod", "1.0.0") and prod.view(view("prod")).segments == []
    assert job("prod", "1.0.0") in prod.spark.running() and job("prod", "1.1.0") not in prod.spark.running()
    assert prod.dag(dag("prod")).version == "1.0.0"
    [rb] = w.audit("rollback")
    assert (rb["stage"], rb["outcome"]) == ("prod", "rolledBack")


def refused_drift(tmp_path: Path) -> World:
    """1.0.0 everywhere; then prod's table is taken over out of band (another release's owner
    property): repairing the drift is refused (NotOwned)."""
    w = World(tmp_path)
    w.commit(repo_files())
    w.promote_everywhere("1.0.0")
    hive = w.at("prod").hive
    key = (ResourceKind.TABLE, table("prod", "1.0.0"))
    t = hive.live[key]
    hive.live[key] = t.model_copy(update={"properties": {**t.properties, "pipectl.release": "other"}})
    w.clock.advance(30)
    return w


@pytest.mark.parametrize(
    "make", [post_promoted, refused_drift], ids=["post-promotion-rollback", "refused-drift"]
)
def test_a_stage_that_fails_while_in_sync_is_not_reported_ready(tmp_path: Path, make: Any) -> None:
    """A stage in sync at the start of the pass that fails during it makes the release not Ready in
    that very pass (it used to report Succeeded/Ready=True until the next one)."""
    w = make(tmp_path)
    w.reconcile()
    assert w.stage("prod").phase in (Phase.ROLLED_BACK, Phase.FAILED)  # what the pass did
    assert w.status().phase is not Phase.SUCCEEDED
    assert w.ready().status == "False"
