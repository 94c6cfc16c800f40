"""The second example pipeline (``manifests/releases/request-latency.yaml``), of another shape than
host-metrics, through dev → staging → canary → prod on the real stack, and its defective version
caught at canary by a distribution statistic that totals do not see.

A real ``pipectl controller run`` drives the release exactly as ``manifests/`` holds it (its Avro
schema, its job ``jobs/request_latency_agg.py`` written on ``controller.jobkit.kafka_job``, its DAG
of two tasks and its two-model transform chain) with an Environment per stage of its own prefixes;
``tools/produce_requests.py`` writes request logs into the dev, staging and prod topics (the
canary reads prod's) for the whole test.

- 1.0.0 Succeeds at every stage (its tables, views, DAG and transforms exist).
- 1.1.0 only adds ``--latency-factor 1.3`` to the job's arguments: every latency is 30 % higher
  (a units bug) while every request is still counted once. It passes dev and staging (no baseline
  there), and at canary the gate ``latency-matches-baseline`` fails on ``avg_latency_ms``
  (Mann-Whitney U over the per-(service, endpoint, status class, minute) means) while its
  ``requests`` relativeTotal passes; the canary is RolledBack and prod keeps serving 1.0.0.

With ``PIPECTL_KEEP_STATE=PATH`` the run's state store is copied to PATH at teardown (whatever the
outcome), for ``bench/bench_canary_detection.py`` to read the canary verdict's audit evidence.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from ctlkit import (
    ROOT,
    Ctl,
    canary_env_yaml,
    commit_files,
    drop_everything,
    free_port,
    init_repo,
    stage_env_yaml,
    stage_is,
    stage_status,
    stop_spark_jobs,
    wait_for,
)

pytestmark = pytest.mark.integration

BOOTSTRAP = "127.0.0.1:9092"
RELEASE = "request-latency"
STAGES = ("dev", "staging", "canary", "prod")
PREFIX = {"dev": "d", "staging": "s", "prod": "p"}
FILES = (
    "releases/request-latency.yaml",
    "schemas/request_log_event.avsc",
    "jobs/request_latency_agg.py",
    "dags/request_latency_daily.py",
    "transforms/request_latency_hourly.sql",
    "transforms/request_slo_daily.sql",
    "tools/produce_requests.py",
)
GATE = "latency-matches-baseline"


@dataclass
class World:
    uid: str
    repo: Path
    state: Path
    ctl: Ctl
    producers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def topic(self, stage: str) -> str:
        return f"it{self.uid}{PREFIX[stage]}.web.requests"

    def db(self, stage: str) -> str:
        return f"it{self.uid}{PREFIX[stage]}_web"

    def wait_stage(self, stage: str, version: str, phase: str, timeout: float) -> float:
        def ok() -> bool:
            st = stage_status(self.state, RELEASE, stage)
            if st.get("version") == version and st.get("phase") in ("Failed", "RolledBack", "RollbackFailed"):
                if st.get("phase") != phase:
                    raise AssertionError(f"{stage} {version} ended {st}\n{self.ctl.log.read_text()[-3000:]}")
            return stage_is(self.state, RELEASE, stage, version, phase)

        return float(wait_for(ok, timeout, f"{stage} {phase} on {version}", self.ctl.log))

    def audit(self) -> list[dict[str, Any]]:
        con = sqlite3.connect(self.state)
        try:
            cols = [r[1] for r in con.execute("PRAGMA table_info(audit)")]
            rows = con.execute("SELECT * FROM audit").fetchall()
        finally:
            con.close()
        return [dict(zip(cols, r, strict=True)) for r in rows]


def environments(uid: str, folder: str, metastore: str) -> dict[str, str]:
    """Each stage reads Hive from the metastore (not SHOW TABLE EXTENDED through the Thrift Server,
    which shares its CPU with this test's four Spark jobs)."""
    files = {
        f"environments/{s}.yaml": stage_env_yaml(
            s, f"it{uid}{PREFIX[s]}.", f"it{uid}{PREFIX[s]}_", folder, metastore_uri=metastore
        )
        for s in ("dev", "staging", "prod")
    }
    files["environments/canary.yaml"] = canary_env_yaml("canary", "prod")
    return files


@pytest.fixture
def world(
    tmp_path: Path, stack: dict[str, Any], spark_env: dict[str, str], unique_name: str
) -> Iterator[World]:
    uid = unique_name
    folder = stack["airflow_dags_folder"]
    files = environments(uid, folder, stack["metastore_uri"])
    for rel in FILES:
        files[rel] = (ROOT / "manifests" / rel).read_text()
    repo = init_repo(tmp_path, files, "request-latency 1.0.0")
    state = tmp_path / "state" / "state.db"
    ctl = Ctl(repo, state, free_port(), tmp_path / "controller.log", bake="20s")
    w = World(uid, repo, state, ctl)
    try:
        yield w
    finally:
        for p in w.producers:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=30)
        ctl.stop()
        print(f"cleanup: stopped streaming jobs {stop_spark_jobs(state.parent, repo, spark_env)}")
        drop_everything(uid, [w.db(s) for s in PREFIX], folder, "request_latency_daily__*")
        shutil.rmtree(state.parent / "checkpoints", ignore_errors=True)
        if os.environ.get("PIPECTL_KEEP_STATE") and state.exists():
            keep_state(state, Path(os.environ["PIPECTL_KEEP_STATE"]))


def keep_state(state: Path, dest: Path) -> None:
    """A consistent copy of the stopped controller's SQLite state store (WAL included) at ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    src, out = sqlite3.connect(state), sqlite3.connect(dest)
    try:
        src.backup(out)
    finally:
        out.close()
        src.close()


def start_producers(w: World, log: Path) -> None:
    for i, stage in enumerate(PREFIX):
        with log.open("ab") as out:
            w.producers.append(
                subprocess.Popen(
                    [sys.executable, str(w.repo / "tools" / "produce_requests.py"), "--bootstrap-servers",
                     BOOTSTRAP, "--topic", w.topic(stage), "--rate", "40", "--duration", "3600", "--seed", str(i)],
                    cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                )
            )


def defective(repo: Path) -> str:
    """1.1.0: the same release, its job started with the latency defect."""
    doc = yaml.safe_load((repo / "releases" / "request-latency.yaml").read_text())
    doc["spec"]["version"] = "1.1.0"
    doc["spec"]["streamingJobs"][0]["args"] = ["--latency-factor", "1.3"]
    return yaml.safe_dump(doc, sort_keys=False)


def gate_metrics(w: World) -> dict[str, dict[str, Any]]:
    """The failing canary verdict's per-metric evidence, from the audit records."""
    for rec in reversed(w.audit()):
        text = json.dumps(rec, default=str)
        if GATE not in text or "mannWhitneyU" not in text:
            continue
        found = _find_metrics(json.loads(text))
        if found:
            return found
    raise AssertionError(f"no audit record holds {GATE}'s metric evidence")


def _find_metrics(node: Any) -> dict[str, dict[str, Any]]:
    """The ``metrics`` list of a canary evidence anywhere in an audit record (JSON in columns)."""
    if isinstance(node, str) and node.startswith(("{", "[")):
        try:
            return _find_metrics(json.loads(node))
        except ValueError:
            return {}
    if isinstance(node, dict):
        metrics = node.get("metrics")
        if isinstance(metrics, list) and metrics and isinstance(metrics[0], dict) and "statistic" in metrics[0]:
            return {m["column"]: m for m in metrics}
        node = list(node.values())
    if isinstance(node, list):
        for child in node:
            found = _find_metrics(child)
            if found:
                return found
    return {}


def test_second_pipeline_promoted_then_latency_defect_rolled_back_at_canary(world: World, tmp_path: Path) -> None:
    w = world
    start_producers(w, tmp_path / "producers.log")
    w.ctl.start()

    for stage in STAGES:
        t = w.wait_stage(stage, "1.0.0", "Succeeded", timeout=600)
        print(f"1.0.0 Succeeded at {stage} after {t:.0f}s")

    commit_files(w.repo, {"releases/request-latency.yaml": defective(w.repo)}, "request-latency 1.1.0")
    w.ctl.webhook()
    for stage in ("dev", "staging"):
        w.wait_stage(stage, "1.1.0", "Succeeded", timeout=600)
    t = w.wait_stage("canary", "1.1.0", "RolledBack", timeout=900)
    print(f"1.1.0 RolledBack at canary {t:.0f}s after staging Succeeded")

    prod = stage_status(w.state, RELEASE, "prod")
    assert prod.get("version") == "1.0.0" and prod.get("phase") == "Succeeded", prod

    metrics = gate_metrics(w)
    latency, requests = metrics["avg_latency_ms"], metrics["requests"]
    print(f"latency: {latency}\nrequests: {requests}")
    assert latency["statistic"] == "mannWhitneyU" and latency["verdict"] == "fail", latency
    assert requests["statistic"] == "relativeTotal" and requests["verdict"] == "pass", requests
