"""A manual rollback while an automatic rollback's restore waits for a backend is refused with a
clear message, through the real ``Reconciler`` over the fakes of ``world.py``: the restore's end
would otherwise overwrite it (the stage's status, its known good and live state). The restore then
ends as it would have, and a manual rollback after it is accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.engine.controller import Controller
from controller.engine.manual import rollback_stage
from controller.engine.requests import RollbackRequests
from controller.model.errors import PipectlError
from controller.model.reasons import Phase, Reason, Verdict
from tests.unit.engine.world import RELEASE, World, release_yaml, repo_files

pytestmark = pytest.mark.usefixtures("quiet_logs")


@pytest.fixture
def restoring(tmp_path: Path) -> World:
    """1.0.0 everywhere; 1.1.0 failed its gate at dev and the restore waits for Airflow to show the
    restored DAG (45 s on the world's clock)."""
    w = World(tmp_path)
    w.commit(repo_files())
    w.promote_everywhere("1.0.0")
    w.commit({"releases/metrics.yaml": release_yaml("1.1.0"), "dags/metrics_daily.py": "DAG = 'v2'\n"})
    w.gates.set("dev", "keeps-up", Verdict.INCONCLUSIVE, "not enough batches")
    w.run_until(lambda: w.stage("dev").version == "1.1.0" and w.stage("dev").phase is Phase.VERIFYING)
    w.at("dev").airflow.delay = 45.0
    w.gates.set("dev", "keeps-up", Verdict.FAIL, "lagging")
    w.clock.advance(30)
    w.reconcile()
    st = w.stage("dev")
    assert (st.phase, st.reason) == (Phase.PROGRESSING, Reason.ROLLING_BACK), st.message
    return w


def test_a_manual_rollback_is_refused_while_a_restore_is_under_way(restoring: World) -> None:
    w = restoring
    assert w.snap is not None
    with pytest.raises(PipectlError) as e:
        rollback_stage(w.reconciler, w.snap, RELEASE, "dev", "1.0.0", "alice")
    msg = str(e.value)
    assert "automatic rollback of 1.1.0 to 1.0.0 is under way" in msg
    assert "would be overwritten" in msg and "RolledBack or RollbackFailed" in msg
    st = w.stage("dev")
    assert (st.phase, st.reason) == (Phase.PROGRESSING, Reason.ROLLING_BACK)  # untouched
    assert w.reconciler.ops.rollouts.stage(RELEASE, "dev").restoring is not None

    w.run_until(lambda: w.stage("dev").phase is Phase.ROLLED_BACK, step=10.0, max_passes=8)
    st = w.stage("dev")
    assert (st.reason, st.version) == (Reason.GATE_FAILED, "1.1.0")
    assert "restored 1.0.0" in (st.message or "")
    assert [r["outcome"] for r in w.audit("rollback")] == ["rolledBack"]

    # once the restore has ended, a manual rollback is accepted and recorded as the person's
    out = rollback_stage(w.reconciler, w.snap, RELEASE, "dev", "1.0.0", "alice")
    assert "rolled back metrics at dev to 1.0.0" in out
    assert w.stage("dev").reason == "ManualRollback"


def test_through_the_controller_the_refusal_is_the_requests_outcome_and_an_event(restoring: World) -> None:
    w = restoring
    requests = RollbackRequests()
    ctl = Controller(None, w.reconciler, rollbacks=requests)  # type: ignore[arg-type]  # rollback() reads no git
    req = requests.submit(RELEASE, "dev", None, "alice")
    ctl.rollback(w.snap, req)
    done = requests.get(RELEASE, req.id)
    assert done is not None and done.as_dict()["state"] == "failed"
    assert "is under way" in str(done.as_dict()["message"])
    events = [e for e in w.store.recent_events(RELEASE) if e["reason"] == "ManualRollbackFailed"]
    assert events and "alice: " in events[0]["message"]
    assert w.stage("dev").reason == Reason.ROLLING_BACK
