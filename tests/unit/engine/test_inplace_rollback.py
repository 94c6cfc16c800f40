"""Rolling back an in-place streaming job, through the real ``Reconciler`` over the fakes of
``world.py``: before a new version replaces the job, the stage's rollout document records where it
starts reading (the old job's committed position); a failed gate restarts the known good from those
offsets on a fresh checkpoint, never on the checkpoint the failed version advanced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.engine.manual import rollback_stage
from controller.model.reasons import Phase, Reason, Verdict
from controller.plan.resources import ResourceKind, StreamingJobResource
from controller.plan.rules.spark import option
from controller.rollout.inplace import PINNED
from controller.store.rollout import StageRollout
from tests.unit.engine.world import RELEASE, World, release_yaml, repo_files

DEV_JOB = f"dev-{RELEASE}-agg"
CANARY_JOB = f"prod-{RELEASE}-agg-canary"
PROD_JOB = f"prod-{RELEASE}-agg"
COMMITTED = {"dev.telemetry.metrics_events": {0: 100, 1: 120, 2: 90}}


def inplace_release(version: str) -> dict[str, str]:
    text = release_yaml(version).replace("strategy: blueGreen", "strategy: inPlace")
    assert "strategy: inPlace" in text
    return {f"releases/{RELEASE}.yaml": text, "jobs/metrics_agg.py": f"print('aggregate {version}')\n"}


pytestmark = pytest.mark.usefixtures("quiet_logs")


@pytest.fixture
def live(tmp_path: Path) -> World:
    """1.0.0 Succeeded at every stage. Not a clone of one promoted world: a clone has its own
    checkpoint root, so every in-place job would look moved."""
    w = World(tmp_path)
    w.commit({**repo_files(), **inplace_release("1.0.0")})
    w.promote_everywhere("1.0.0")
    return w


def doc(w: World, stage: str) -> StageRollout:
    return w.reconciler.ops.rollouts.stage(RELEASE, stage)


def job(w: World, inst: str, name: str) -> StreamingJobResource:
    j = w.at(inst).spark.get(ResourceKind.STREAMING_JOB, name)
    assert isinstance(j, StreamingJobResource), name
    return j


def decided(w: World, stage: str, version: str) -> bool:
    st = w.stage(stage)
    return st.version == version and st.phase not in (Phase.PENDING, Phase.PROGRESSING, Phase.VERIFYING)


def fail_at(w: World, stage: str, gate: str, version: str = "1.1.0") -> None:
    w.commit(inplace_release(version))
    w.gates.set(stage, gate, Verdict.FAIL, "lagging")
    w.run_until(lambda: decided(w, stage, version))


def test_the_known_good_restarts_from_the_recorded_offsets_on_a_fresh_checkpoint(live: World) -> None:
    w = live
    own = job(w, "dev", DEV_JOB).checkpoint
    w.at("dev").spark.committed[DEV_JOB] = COMMITTED
    fail_at(w, "dev", "keeps-up")

    st = w.stage("dev")
    assert (st.phase, st.reason, st.version) == (Phase.ROLLED_BACK, Reason.GATE_FAILED, "1.1.0"), st.message
    rec = doc(w, "dev").inplace_starts[DEV_JOB]
    want = {t: {str(p): o for p, o in parts.items()} for t, parts in COMMITTED.items()}
    assert (rec.version, json.loads(rec.offsets), rec.checkpoint) == ("1.1.0", want, own)
    pin = doc(w, "dev").checkpoints[DEV_JOB]
    assert pin.checkpoint.startswith(own + PINNED + "v1_1_0-") and pin.after == "1.1.0"

    restored = job(w, "dev", DEV_JOB)
    assert (restored.version, restored.running) == ("1.0.0", True)
    assert restored.checkpoint == pin.checkpoint == option(restored.args, "--checkpoint")
    assert json.loads(option(restored.args, "--starting-offsets") or "") == want
    # the job kit's sink hands the table to the new checkpoint only when told to
    assert "--takeover-table" in restored.args and "--takeover-table" not in job(w, "staging", f"staging-{RELEASE}-agg").args

    [rb] = w.audit("rollback")
    assert rb["details"]["stopped"] == [DEV_JOB]
    [item] = [i for i in rb["details"]["restored"] if i["name"] == DEV_JOB]
    assert item["version"] == "1.0.0"

    before = w.objects()
    for _ in range(3):  # held on the fresh checkpoint: no pass moves it back or restarts it
        w.clock.advance(30)
        assert not w.reconcile().errors
    assert w.objects() == before


def test_a_later_version_continues_on_the_fresh_checkpoint(live: World) -> None:
    w = live
    w.at("dev").spark.committed[DEV_JOB] = COMMITTED
    fail_at(w, "dev", "keeps-up")
    fresh = job(w, "dev", DEV_JOB).checkpoint
    w.gates.clear()
    w.commit(inplace_release("1.2.0"))
    w.run_until(lambda: decided(w, "dev", "1.2.0"))

    assert w.stage("dev").phase is Phase.SUCCEEDED
    assert (job(w, "dev", DEV_JOB).version, job(w, "dev", DEV_JOB).checkpoint) == ("1.2.0", fresh)
    rec = doc(w, "dev").inplace_starts[DEV_JOB]
    assert (rec.version, rec.checkpoint) == ("1.2.0", fresh)


def test_a_canary_rollback_lists_the_failed_in_place_canary_job_and_leaves_prods_job_alone(
    live: World,
) -> None:
    w = live
    prod = w.at("prod").spark
    starts = prod.starts[PROD_JOB]
    fail_at(w, "canary", "matches-baseline")

    assert w.stage("canary").phase is Phase.ROLLED_BACK
    [rb] = w.audit("rollback")
    assert rb["stage"] == "canary" and CANARY_JOB in rb["details"]["stopped"]
    canary = job(w, "prod", CANARY_JOB)
    assert canary.version == "1.0.0"
    assert canary.checkpoint == doc(w, "canary").checkpoints[CANARY_JOB].checkpoint
    assert (job(w, "prod", PROD_JOB).version, prod.starts[PROD_JOB]) == ("1.0.0", starts)


def test_a_manual_rollback_also_restarts_the_known_good_from_the_recorded_offsets(live: World) -> None:
    w = live
    own = job(w, "dev", DEV_JOB).checkpoint
    w.at("dev").spark.committed[DEV_JOB] = COMMITTED
    w.commit(inplace_release("1.1.0"))
    w.promote_everywhere("1.1.0")
    assert w.snap is not None
    rollback_stage(w.reconciler, w.snap, RELEASE, "dev", "1.0.0", "alice")

    pin = doc(w, "dev").checkpoints[DEV_JOB]
    assert pin.checkpoint.startswith(own + PINNED + "v1_1_0-") and pin.after == "1.1.0"
    restored = job(w, "dev", DEV_JOB)
    assert (restored.version, restored.checkpoint) == ("1.0.0", pin.checkpoint)
    assert option(restored.args, "--starting-offsets") == doc(w, "dev").inplace_starts[DEV_JOB].offsets
