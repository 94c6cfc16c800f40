"""Automatic rollback at canary and at prod, with a real controller on a throwaway git repo.

The release has a topic, a table, a serving view and an Airflow DAG (no Spark job, so it is
quick) and dataQuality gates that Presto evaluates over rows the test writes through the Spark
Thrift Server. Stages: dev (automatic) → canary (``canaryOf: prod``) → prod (automatic).

- v1 (1.0.0) promotes through all three stages.
- Rollback at canary: v2 changes the topic's ``retention.ms`` and the DAG version, and adds a
  gate that fails at canary only. Canary ends RolledBack (GateFailed, naming the gate); prod stays
  Succeeded on v1 with v1's live resources; history and the audit ledger hold the rollback.
- Rollback at prod: v3 (same kind of change) passes dev and canary and fails a prod-only gate.
  Prod ends RolledBack and its live resources are v1's again (the known-good manifest was
  re-applied): topic config read with a Kafka AdminClient, DAG version tag from Airflow's API.

Names: topics ``it<uid>dev.``/``it<uid>prd.``, databases ``it<uid>dev_``/``it<uid>prd_``, the DAG
``rc_<uid>__<stage>``; everything is dropped at the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from ctlkit import (
    DAG_SOURCE,
    Ctl,
    canary_env_yaml,
    commit_files,
    dag_version,
    drop_everything,
    free_port,
    init_repo,
    pipectl,
    pipectl_json,
    stage_env_yaml,
    stage_is,
    stage_status,
    status,
    topic_config,
    wait_for,
)
from pyhive import hive, presto

BOOTSTRAP = "127.0.0.1:9092"
STAGES = ["dev", "canary", "prod"]
V1_RETENTION = "3600000"

# every version has this gate: Presto can read the stage's table (passes on an empty table)
READABLE = {
    "name": "table-readable",
    "type": "dataQuality",
    "query": "SELECT count(*) FROM rc.counts",
    "expect": ">= 0",
}
# from v2 on, once the test has written rows into every stage's table
ROWS_PRESENT = {
    "name": "rows-present",
    "type": "dataQuality",
    "query": "SELECT count(*) FROM rc.counts",
    "expect": "> 0",
}


def failing_gate(name: str, stage: str) -> dict[str, Any]:
    """A real dataQuality gate that no stage's data can satisfy, applied at one stage only."""
    return {
        "name": name,
        "type": "dataQuality",
        "stages": [stage],
        "query": "SELECT count(*) FROM rc.counts",
        "expect": "> 1000000",
    }


@dataclass
class World:
    uid: str
    name: str
    dag: str
    repo: Path
    state: Path
    ctl: Ctl
    dags_folder: str
    airflow_url: str

    @property
    def url(self) -> str:
        return f"sqlite:///{self.state}"

    def topic(self, stage: str) -> str:
        return f"it{self.uid}{'dev' if stage == 'dev' else 'prd'}.rc.events"

    def db(self, stage: str) -> str:
        return f"it{self.uid}{'dev' if stage == 'dev' else 'prd'}_rc"

    def release(self, version: str, retention: str, gates: list[dict[str, Any]]) -> str:
        doc = {
            "apiVersion": "pipectl.dev/v1alpha1",
            "kind": "PipelineRelease",
            "metadata": {"name": self.name},
            "spec": {
                "version": version,
                "topics": [
                    {
                        "name": "rc.events",
                        "partitions": 2,
                        "replicationFactor": 1,
                        "config": {"retention.ms": retention},
                    }
                ],
                "tables": [
                    {
                        "name": "rc.counts",
                        "columns": [{"name": "k", "type": "string"}, {"name": "n", "type": "bigint"}],
                        "partitionedBy": [{"name": "dt", "type": "string"}],
                    }
                ],
                "views": [{"name": "rc.counts_v", "table": "rc.counts"}],
                "dags": [{"id": self.dag, "path": "dags/rc_daily.py"}],
                "rollout": {"stages": STAGES, "gates": gates, "rollback": {"automatic": True}},
            },
        }
        return yaml.safe_dump(doc, sort_keys=False)

    def commit(self, version: str, retention: str, gates: list[dict[str, Any]]) -> None:
        commit_files(self.repo, {"releases/rc.yaml": self.release(version, retention, gates)}, version)
        self.ctl.webhook()

    def retention(self, stage: str) -> str | None:
        cfg = topic_config(BOOTSTRAP, self.topic(stage))
        return None if cfg is None else str(cfg["retention.ms"])

    def dag_version(self, stage: str) -> str | None:
        return dag_version(self.airflow_url, f"{self.dag}__{stage}")

    def wait_stage(self, stage: str, version: str, phase: str, timeout: float) -> float:
        def ok() -> bool:
            st = stage_status(self.state, self.name, stage)
            # a stage that ends otherwise fails now, with its status, not at the timeout
            if st.get("version") == version and st.get("phase") in ("Failed", "RolledBack", "Invalid"):
                if st.get("phase") != phase:
                    raise AssertionError(f"{stage} {version} ended {st}\n{self.ctl.log.read_text()[-3000:]}")
            return bool(stage_is(self.state, self.name, stage, version, phase))

        return float(wait_for(ok, timeout, f"{stage} {phase} on {version}", self.ctl.log))


@pytest.fixture
def world(tmp_path: Path, stack: dict[str, Any], unique_name: str) -> Iterator[World]:
    uid = unique_name
    folder = stack["airflow_dags_folder"]
    dag = f"rc_{uid}"
    files = {
        "environments/dev.yaml": stage_env_yaml("dev", f"it{uid}dev.", f"it{uid}dev_", folder),
        "environments/canary.yaml": canary_env_yaml("canary", "prod"),
        "environments/prod.yaml": stage_env_yaml("prod", f"it{uid}prd.", f"it{uid}prd_", folder),
        "dags/rc_daily.py": DAG_SOURCE,
    }
    name = f"rb-{uid}"
    repo = init_repo(tmp_path, files, "environments")
    state = tmp_path / "state" / "state.db"
    ctl = Ctl(repo, state, free_port(), tmp_path / "controller.log")
    w = World(uid, name, dag, repo, state, ctl, folder, stack["airflow_url"])
    try:
        yield w
    finally:
        ctl.stop()
        drop_everything(uid, [w.db("dev"), w.db("prod")], folder, f"{dag}__*")


def insert_rows(w: World) -> None:
    """Rows for the data gates: dev's and prod's tables and the canary's shadow table."""
    con = hive.connect("127.0.0.1", 10000, auth="NOSASL")
    try:
        cur = con.cursor()
        for table in (f"{w.db('dev')}.counts", f"{w.db('prod')}.counts", f"{w.db('prod')}.counts__canary"):
            cur.execute(
                f"INSERT INTO {table} PARTITION (dt='2026-01-01') VALUES ('a', 1), ('b', 2), ('c', 3)"
            )
    finally:
        con.close()
    pcon = presto.connect(host="127.0.0.1", port=8080, catalog="hive", schema="default", username="it")
    cur = pcon.cursor()
    for table in ("counts", "counts__canary"):
        cur.execute(f'SELECT count(*) FROM hive."{w.db("prod")}"."{table}"')
        assert cur.fetchall() == [(3,)], table


def start_with_v1(w: World) -> None:
    commit_files(w.repo, {"releases/rc.yaml": w.release("1.0.0", V1_RETENTION, [READABLE])}, "1.0.0")
    w.ctl.start()
    t0 = time.time()
    for stage in STAGES:
        w.wait_stage(stage, "1.0.0", "Succeeded", 300)
    print(f"v1 Succeeded at dev, canary, prod in {time.time() - t0:.0f}s")
    assert w.retention("dev") == V1_RETENTION
    assert w.retention("prod") == V1_RETENTION
    assert w.dag_version("dev") == "1.0.0"
    assert w.dag_version("prod") == "1.0.0"
    assert w.dag_version("canary") is None  # a canary stage deploys no DAGs
    prod = stage_status(w.state, w.name, "prod")
    assert [(g["name"], g["verdict"]) for g in prod["gates"]] == [("table-readable", "pass")]
    insert_rows(w)


def flaps(what: str, probe: Any, want: Any, seconds: float) -> str | None:
    """None when ``probe()`` equals ``want`` at every look for ``seconds``, else what was seen."""
    seen = []
    deadline = time.time() + seconds
    while time.time() < deadline:
        seen.append(probe())
        time.sleep(0.25)
    bad = [v for v in seen if v != want]
    if not bad:
        return None
    return f"{what}: expected {want!r} throughout {seconds:g}s; saw {sorted(set(map(str, seen)))} ({len(bad)}/{len(seen)} looks off)"


def audit_rollback(w: World, stage: str, version: str, gate: str) -> None:
    """The audit ledger holds the rollback of ``version`` at ``stage``, naming ``gate`` with its evidence."""
    audit = pipectl_json("audit", w.name, "--state", w.url)
    rb = [r for r in audit if r["kind"] == "rollback" and r["stage"] == stage and r["version"] == version]
    assert len(rb) == 1, [(r["kind"], r["stage"], r["version"], r["outcome"]) for r in audit]
    rec = rb[0]
    assert rec["outcome"] == "rolledBack"
    assert rec["reason"] == "GateFailed"
    assert f"gate {gate} failed" in rec["message"] and "restored 1.0.0" in rec["message"], rec["message"]
    verdicts = {g["name"]: g["verdict"] for g in rec["gates"]}
    assert verdicts == {"table-readable": "pass", "rows-present": "pass", gate: "fail"}, verdicts
    failed = next(g for g in rec["gates"] if g["name"] == gate)
    assert failed["evidence"]["value"] == 3.0 and failed["evidence"]["expect"] == "> 1000000"
    # the failed gate verdict that triggered it, and the restore of 1.0.0 at that stage
    gate_recs = [r for r in audit if r["kind"] == "gate" and r["stage"] == stage and r["version"] == version]
    assert [r["outcome"] for r in gate_recs] == ["failed"]
    assert rec["seq"] > gate_recs[0]["seq"]


def history_rollback(w: World, stage: str, version: str, gate: str) -> str | None:
    """None when ``pipectl history`` shows ``version`` RolledBack at ``stage`` naming the failed ``gate``."""
    history = pipectl_json("history", w.name, "--state", w.url)
    rows = [h for h in history if h["stage"] == stage and h["version"] == version]
    named = [
        h
        for h in rows
        if h["outcome"] == "RolledBack"
        and h["reason"] == "GateFailed"
        and any(g.get("name") == gate and g.get("verdict") == "fail" for g in h.get("gates") or [])
    ]
    if len(named) == 1:
        return None
    seen = [(h["kind"], h["version"], h["outcome"], h["reason"], h["gates"]) for h in rows]
    return (
        f"pipectl history {w.name} -o json: expected one {version} attempt at {stage} RolledBack (GateFailed) "
        f"with gate {gate} failed; its {version} rows at {stage} (kind, version, outcome, reason, gates): {seen}"
    )


def test_rollback_at_canary(world: World) -> None:
    w = world
    start_with_v1(w)

    # v2: retention and DAG version change, plus a gate that fails at canary only
    t0 = time.time()
    w.commit("2.0.0", "7200000", [READABLE, ROWS_PRESENT, failing_gate("canary-volume", "canary")])
    w.wait_stage("dev", "2.0.0", "Succeeded", 180)
    assert w.retention("dev") == "7200000"
    assert w.dag_version("dev") == "2.0.0"
    w.wait_stage("canary", "2.0.0", "RolledBack", 180)
    print(f"v2: dev Succeeded, canary RolledBack {time.time() - t0:.0f}s after the commit")

    canary = stage_status(w.state, w.name, "canary")
    assert canary["reason"] == "GateFailed"
    assert "gate canary-volume failed" in canary["message"], canary["message"]
    assert "restored 1.0.0" in canary["message"], canary["message"]
    verdicts = {g["name"]: g["verdict"] for g in canary["gates"]}
    assert verdicts == {"table-readable": "pass", "rows-present": "pass", "canary-volume": "fail"}

    # prod never left v1: status and the live resources (shared topic restored by the rollback)
    prod = stage_status(w.state, w.name, "prod")
    assert (prod["version"], prod["phase"]) == ("1.0.0", "Succeeded"), prod
    assert w.dag_version("prod") == "1.0.0"
    assert w.retention("prod") == V1_RETENTION
    assert stage_is(w.state, w.name, "dev", "2.0.0", "Succeeded")
    assert status(w.state, w.name)["phase"] == "RolledBack"
    audit_rollback(w, "canary", "2.0.0", "canary-volume")

    # pipectl defects show up below; all of them are reported together
    defects = [
        flaps(
            "prod topic retention.ms after the canary rollback", lambda: w.retention("prod"), V1_RETENTION, 10
        ),
        history_rollback(w, "canary", "2.0.0", "canary-volume"),
    ]
    assert stage_is(w.state, w.name, "prod", "1.0.0", "Succeeded")
    assert stage_is(w.state, w.name, "canary", "2.0.0", "RolledBack")
    w.ctl.stop()
    verify = pipectl("audit", "verify", "--state", w.url)
    assert verify.returncode == 0, verify.stderr
    found = [d for d in defects if d]
    assert not found, "\n".join(found)


def test_rollback_at_prod(world: World) -> None:
    w = world
    start_with_v1(w)

    # v3: same kind of change, passes dev and canary, fails a gate that applies at prod only
    t0 = time.time()
    w.commit("3.0.0", "10800000", [READABLE, ROWS_PRESENT, failing_gate("prod-volume", "prod")])
    w.wait_stage("dev", "3.0.0", "Succeeded", 180)
    w.wait_stage("canary", "3.0.0", "Succeeded", 180)
    w.wait_stage("prod", "3.0.0", "RolledBack", 240)
    print(f"v3: dev and canary Succeeded, prod RolledBack {time.time() - t0:.0f}s after the commit")
    assert w.retention("dev") == "10800000"
    assert w.dag_version("dev") == "3.0.0"

    prod = stage_status(w.state, w.name, "prod")
    assert prod["reason"] == "GateFailed"
    assert "gate prod-volume failed" in prod["message"], prod["message"]
    assert "restored 1.0.0" in prod["message"], prod["message"]
    verdicts = {g["name"]: g["verdict"] for g in prod["gates"]}
    assert verdicts == {"table-readable": "pass", "rows-present": "pass", "prod-volume": "fail"}

    # the restore re-applied v1's manifest at prod: DAG back on 1.0.0, topic config back to v1's
    assert w.dag_version("prod") == "1.0.0"
    wait_for(lambda: w.retention("prod") == V1_RETENTION, 30, "prod topic config back on v1", w.ctl.log)
    audit_rollback(w, "prod", "3.0.0", "prod-volume")

    # pipectl defects show up below; all of them are reported together
    defects = [
        # the restored config must stay: nothing may re-apply 3.0.0's config to prod's topic
        flaps(
            "prod topic retention.ms after the prod rollback", lambda: w.retention("prod"), V1_RETENTION, 15
        ),
        history_rollback(w, "prod", "3.0.0", "prod-volume"),
    ]
    assert w.dag_version("prod") == "1.0.0"
    assert stage_is(w.state, w.name, "prod", "3.0.0", "RolledBack")
    # the canary stands down with its target: 3.0.0 stopped there, prod's known good 1.0.0 held
    wait_for(lambda: stage_is(w.state, w.name, "canary", "3.0.0", "RolledBack"), 60, "canary stands down", w.ctl.log)
    canary = stage_status(w.state, w.name, "canary")
    assert canary["reason"] == "TargetRolledBack", canary
    assert "holding prod's known good 1.0.0" in canary["message"], canary["message"]
    w.ctl.stop()
    verify = pipectl("audit", "verify", "--state", w.url)
    assert verify.returncode == 0, verify.stderr
    found = [d for d in defects if d]
    assert not found, "\n".join(found)
