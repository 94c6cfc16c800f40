"""The rollback audit record lists what the restore proved and what it stopped (``details``), for a
gate rollback at a stage with its own installation, at a canary, after a post-promotion failure and
when the restore does not happen (real ``Reconciler`` over the fakes of ``world.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.model.errors import PermanentBackendError
from controller.model.reasons import Phase, Verdict
from tests.unit.engine.world import RELEASE, World, dag, job, release_yaml, repo_files, table, view

V2_FILES = {"jobs/metrics_agg.py": "print('aggregate v2')\n", "dags/metrics_daily.py": "DAG = 'v2'\n"}
POST_GATES = "      - {name: prod-errors, type: dataQuality, stages: [prod], query: 'SELECT 1', expect: '== 1', postPromotion: true}\n"


pytestmark = pytest.mark.usefixtures("quiet_logs")


@pytest.fixture(scope="module")
def promoted(tmp_path_factory: pytest.TempPathFactory) -> World:
    w = World(tmp_path_factory.mktemp("promoted"))
    w.commit(repo_files())
    w.promote_everywhere("1.0.0")
    return w


@pytest.fixture
def live(promoted: World, tmp_path: Path) -> World:
    return promoted.clone(tmp_path / "world")


def commit_v2(w: World, **release: Any) -> None:
    w.commit({**V2_FILES, f"releases/{RELEASE}.yaml": release_yaml("1.1.0", **release)})


def judged(w: World, stage: str) -> bool:
    st = w.stage(stage)
    return st.version == "1.1.0" and st.phase not in (Phase.PENDING, Phase.PROGRESSING, Phase.VERIFYING)


def details(w: World, stage: str) -> dict[str, Any]:
    [rb] = [r for r in w.audit("rollback") if r["stage"] == stage]
    return dict(rb["details"])


def items(d: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(i["kind"], i["name"]): i for i in d["restored"]}


def test_a_gate_rollback_lists_the_job_view_dag_and_topic_it_restored(live: World) -> None:
    w = live
    commit_v2(w)
    w.gates.set("staging", "keeps-up", Verdict.FAIL, "lag 900s")
    w.run_until(lambda: judged(w, "staging"))
    assert w.stage("staging").phase is Phase.ROLLED_BACK
    d = details(w, "staging")
    assert (d["trigger"], d["from"], d["to"]) == ("gate", "1.1.0", "1.0.0")
    assert d["stopped"] == [job("staging", "1.1.0")]
    got = items(d)
    assert got[("streamingJob", job("staging", "1.0.0"))]["version"] == "1.0.0"
    assert got[("streamingJob", job("staging", "1.0.0"))]["running"] is True
    assert got[("view", view("staging"))]["target"] == table("staging", "1.0.0")
    assert got[("dag", dag("staging"))]["version"] == "1.0.0"
    assert ("topic", "staging.telemetry.metrics_events") in got
    assert ("table", table("staging", "1.0.0")) in got
    # nothing of the failed version is listed as restored
    assert not [k for k in got if "1.1.0" in str(got[k].get("version")) or "1_1_0" in k[1] or "1-1-0" in k[1]]


def test_a_canary_rollback_lists_the_canarys_own_items_only(live: World) -> None:
    w = live
    commit_v2(w)
    w.gates.set("canary", "matches-baseline", Verdict.FAIL, "totals differ by 25%")
    w.run_until(lambda: judged(w, "canary"))
    d = details(w, "canary")
    got = items(d)
    assert d["stopped"] == [job("prod", "1.1.0")]
    assert got[("streamingJob", job("prod", "1.0.0"))]["running"] is True
    # prod's view, DAG and topics belong to prod: a canary neither changes nor claims them
    assert not [k for k in got if k[0] in ("view", "dag", "topic")], sorted(got)


def test_a_post_promotion_rollback_lists_the_view_back_on_the_known_good(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.commit(repo_files(gates=POST_GATES, rollout_extra="    analysis: {bake: 10m}\n"))
    w.promote_everywhere("1.0.0")
    w.clock.advance(601)
    w.reconcile()
    commit_v2(w, gates=POST_GATES, rollout_extra="    analysis: {bake: 10m}\n")
    w.promote_everywhere("1.1.0")
    w.gates.set("prod", "prod-errors", Verdict.FAIL, "no rows in the last 5 minutes")
    w.clock.advance(120)
    w.reconcile()
    assert w.stage("prod").phase is Phase.ROLLED_BACK
    d = details(w, "prod")
    assert (d["trigger"], d["from"], d["to"]) == ("postPromotion", "1.1.0", "1.0.0")
    got = items(d)
    assert got[("view", view("prod"))]["target"] == table("prod", "1.0.0")
    assert "segments" not in got[("view", view("prod"))]
    assert d["stopped"] == [job("prod", "1.1.0")]


def test_a_restore_that_fails_lists_nothing_as_restored(live: World) -> None:
    w = live
    commit_v2(w)
    w.gates.set("dev", "keeps-up", Verdict.INCONCLUSIVE, "not yet")
    w.run_until(lambda: w.stage("dev").version == "1.1.0" and w.stage("dev").phase is Phase.VERIFYING)
    w.at("dev").airflow.fail[dag("dev")] = PermanentBackendError("airflow", "permission denied")
    w.gates.set("dev", "keeps-up", Verdict.FAIL, "lag 900s")
    w.clock.advance(30)
    w.reconcile()
    assert w.stage("dev").phase is Phase.ROLLBACK_FAILED
    d = details(w, "dev")
    assert (d["from"], d["to"], d["restored"], d["stopped"]) == ("1.1.0", "1.0.0", [], [])
