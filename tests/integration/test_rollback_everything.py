"""A failed gate restores everything: the job, the serving view, the DAG and the topic config.

A real ``pipectl controller run`` drives a release made of the example streaming job
(``manifests/jobs/host_metrics_agg.py``, strategy blueGreen, with the example Avro schema and the
example producer ``tools/produce_events.py`` writing into the stage topic for the whole test), an
Airflow DAG, a topic with a config and a serving view, through two stages: ``canary`` (canaryOf
prod) and ``prod``. Stages are few on purpose: each stage with its own Spark job is a JVM on a
2-core machine.

- v1 (1.0.0) is promoted at canary and prod.
- Phase canary: v2 (2.0.0) changes the job (its rows carry the metric prefix ``FAILED-2.0.0-``,
  which v1 never writes), the DAG version and the topic's ``retention.ms``, and has a gate that
  applies at canary only and fails on exactly those rows.
- Phase prod: v3 (3.0.0), the same kind of change (``FAILED-3.0.0-``), passes canary and fails the
  same kind of gate at prod only.

After each automatic rollback, read from the backends themselves:

- the serving view reads v1's table (``SHOW CREATE VIEW`` through Presto), and a Presto query over
  it returns rows and none written by the failed version (while the failed version's own table
  holds such rows, so the check can fail);
- v1's job is alive and is the very process that ran before the failed version was deployed (same
  pid and start time in the LocalRunner registry: blue was never restarted); the failed version's
  job is stopped, and it had started at the offsets the stage's rollout document recorded for it;
- the DAG's ``version:`` tag (Airflow's REST API) and the topic's ``retention.ms`` (Kafka
  AdminClient) are v1's;
- the rollback audit record lists what it restored (``details.restored``) and stopped
  (``details.stopped``): at prod the job, the view, the DAG and the topic; at canary, which owns no
  view, DAG or topic (they are prod's), the jobs;
- for 15 s afterwards nothing moves again (the failed job stays stopped, view and config stay).

The time from the failing gate verdict to RolledBack is printed for each phase.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from ctlkit import (
    DAG_SOURCE,
    ROOT,
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
    stop_spark_jobs,
    topic_config,
    wait_for,
)

BOOTSTRAP = "127.0.0.1:9092"
STAGES = ["canary", "prod"]
RATE = 20  # events/s
RETENTION = {"1.0.0": "86400000", "2.0.0": "172800000", "3.0.0": "259200000"}
JOB = "jobs/host_metrics_agg.py"
SELECT_FIELDS = '"event.host", "event.metric", "event.value", "event.event_time", DECODE_ERROR'


def marker(version: str) -> str:
    return f"FAILED-{version}-"


def job_source(version: str) -> str:
    """The example job; from 2.0.0 on every row's metric carries a prefix v1 never writes."""
    code = (ROOT / "manifests" / JOB).read_text()
    if version == "1.0.0":
        return code
    assert code.count(SELECT_FIELDS) == 1, "the example job changed: plant the marker elsewhere"
    planted = (
        f'"event.host", F.concat(F.lit("{marker(version)}"), F.col("event.metric")).alias("metric"), '
        '"event.value", "event.event_time", DECODE_ERROR'
    )
    return code.replace(SELECT_FIELDS, planted)


def marker_gate(version: str, stage: str) -> dict[str, Any]:
    """A real dataQuality gate over the stage's table: no row may carry the failed version's marker."""
    return {
        "name": f"no-marked-rows-{stage}",
        "type": "dataQuality",
        "stages": [stage],
        "query": f"SELECT count(*) FROM telemetry.host_metrics_1m WHERE metric LIKE '{marker(version)}%'",
        "expect": "== 0",
    }


COMMON_GATES: list[dict[str, Any]] = [
    {"name": "keeps-up", "type": "streamingHealth", "maxLagSeconds": 600},
    {
        "name": "aggregates-present",
        "type": "dataQuality",
        "query": "SELECT count(*) FROM telemetry.host_metrics_1m",
        "expect": "> 0",
    },
]


@dataclass
class World:
    uid: str
    name: str
    repo: Path
    state: Path
    ctl: Ctl
    airflow_url: str
    spark_env: dict[str, str]
    producer: subprocess.Popen[bytes] | None = None
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"sqlite:///{self.state}"

    @property
    def topic(self) -> str:
        return f"it{self.uid}.telemetry.host_metrics"

    @property
    def db(self) -> str:
        return f"it{self.uid}_telemetry"

    @property
    def view(self) -> str:
        return f'hive."{self.db}"."host_metrics"'

    def table(self, version: str) -> str:
        return f"host_metrics_1m__v{version.replace('.', '_')}"

    @property
    def dag(self) -> str:
        return f"hm_{self.uid}"

    def job(self, version: str) -> str:
        return f"prod-{self.name}-host-metrics-agg-v{version.replace('.', '-')}"

    def release(self, version: str, gates: list[dict[str, Any]]) -> str:
        doc = {
            "apiVersion": "pipectl.dev/v1alpha1",
            "kind": "PipelineRelease",
            "metadata": {"name": self.name},
            "spec": {
                "version": version,
                "schemas": [
                    {
                        "name": "host-metric-event",
                        "format": "avro",
                        "path": "schemas/host_metric_event.avsc",
                        "compatibility": "BACKWARD",
                    }
                ],
                "topics": [
                    {
                        "name": "telemetry.host_metrics",
                        "partitions": 2,
                        "replicationFactor": 1,
                        "config": {"retention.ms": RETENTION[version], "cleanup.policy": "delete"},
                        "valueSchema": "host-metric-event",
                    }
                ],
                "tables": [
                    {
                        "name": "telemetry.host_metrics_1m",
                        "columns": [
                            {"name": "host", "type": "string"},
                            {"name": "metric", "type": "string"},
                            {"name": "window_start", "type": "timestamp"},
                            {"name": "samples", "type": "bigint"},
                            {"name": "avg_value", "type": "double"},
                            {"name": "max_value", "type": "double"},
                        ],
                        "partitionedBy": [{"name": "dt", "type": "string"}],
                        "format": "parquet",
                    }
                ],
                "views": [{"name": "telemetry.host_metrics", "table": "telemetry.host_metrics_1m"}],
                "streamingJobs": [
                    {
                        "name": "host-metrics-agg",
                        "entrypoint": JOB,
                        "sources": [{"topic": "telemetry.host_metrics", "startingOffsets": "earliest"}],
                        "sinks": [{"table": "telemetry.host_metrics_1m"}],
                        "trigger": "10s",
                        "strategy": "blueGreen",
                        "replayWindow": "1m",
                        "conf": {"spark.sql.shuffle.partitions": "2"},
                    }
                ],
                "dags": [{"id": self.dag, "path": "dags/hm_daily.py"}],
                "rollout": {"stages": STAGES, "gates": gates, "rollback": {"automatic": True}},
            },
        }
        return yaml.safe_dump(doc, sort_keys=False)

    def commit(self, version: str, gates: list[dict[str, Any]]) -> None:
        commit_files(
            self.repo,
            {"releases/hm.yaml": self.release(version, gates), JOB: job_source(version)},
            f"{self.name} {version}",
        )

    def phase(self, label: str, t0: float) -> None:
        self.phases[label] = time.time() - t0
        print(f"[{self.phases[label]:6.1f}s] {label}", flush=True)

    # --- reading the backends ------------------------------------------------------------------

    def presto(self, sql: str) -> list[tuple[Any, ...]]:
        from pyhive import presto

        cur = presto.connect(
            host="127.0.0.1", port=8080, catalog="hive", schema="default", username="it-rbe"
        ).cursor()
        cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()]

    def view_sql(self) -> str:
        return " ".join(str(self.presto(f"SHOW CREATE VIEW {self.view}")[0][0]).split())

    def retention(self) -> str | None:
        cfg = topic_config(BOOTSTRAP, self.topic)
        return None if cfg is None else str(cfg["retention.ms"])

    def dag_version(self) -> str | None:
        return dag_version(self.airflow_url, f"{self.dag}__prod")

    def jobs(self) -> dict[str, Any]:
        from controller.adapters.spark import LocalRunner

        runner = LocalRunner(self.state.parent / "spark", self.repo, self.spark_env)
        return dict(runner.list())

    def alive(self, version: str) -> bool:
        st = self.jobs().get(self.job(version))
        return bool(st is not None and st.alive)

    def rollout_doc(self, stage: str) -> dict[str, Any]:
        con = sqlite3.connect(self.state)
        try:
            row = con.execute(
                "SELECT value FROM kv WHERE key = ?", (f"rollout/{self.name}/{stage}",)
            ).fetchone()
        finally:
            con.close()
        return json.loads(row[0]) if row else {}

    def wait_stage(self, stage: str, version: str, phase: str, timeout: float) -> float:
        def ok() -> bool:
            st = stage_status(self.state, self.name, stage)
            # a stage that ends otherwise fails now, with its status, not at the timeout
            if st.get("version") == version and st.get("phase") in ("Failed", "RolledBack", "RollbackFailed"):
                if st.get("phase") != phase:
                    raise AssertionError(f"{stage} {version} ended {st}\n{self.ctl.log.read_text()[-3000:]}")
            return stage_is(self.state, self.name, stage, version, phase)

        return float(wait_for(ok, timeout, f"{stage} {phase} on {version}", self.ctl.log))


@pytest.fixture
def world(
    tmp_path: Path, stack: dict[str, Any], spark_env: dict[str, str], unique_name: str
) -> Iterator[World]:
    uid = unique_name
    folder = stack["airflow_dags_folder"]
    files = {
        "environments/canary.yaml": canary_env_yaml("canary", "prod"),
        "environments/prod.yaml": stage_env_yaml(
            "prod", f"it{uid}.", f"it{uid}_", folder, metastore_uri=stack["metastore_uri"]
        ),
        "dags/hm_daily.py": DAG_SOURCE,
    }
    for rel in ("schemas/host_metric_event.avsc", "tools/produce_events.py"):
        files[rel] = (ROOT / "manifests" / rel).read_text()
    repo = init_repo(tmp_path, files, "environments")
    state = tmp_path / "state" / "state.db"
    ctl = Ctl(repo, state, free_port(), tmp_path / "controller.log", bake="30s")
    w = World(uid, f"rbe-{uid}", repo, state, ctl, stack["airflow_url"], spark_env)
    try:
        yield w
    finally:
        if w.producer and w.producer.poll() is None:
            os.killpg(w.producer.pid, signal.SIGTERM)
            w.producer.wait(timeout=30)
        ctl.stop()
        print(f"cleanup: stopped streaming jobs {stop_spark_jobs(state.parent, repo, spark_env)}")
        drop_everything(uid, [w.db], folder, f"{w.dag}__*")
        shutil.rmtree(state.parent / "checkpoints", ignore_errors=True)


def start_producer(w: World, log: Path) -> None:
    with log.open("ab") as out:
        w.producer = subprocess.Popen(
            [
                sys.executable,
                str(w.repo / "tools" / "produce_events.py"),
                "--bootstrap-servers",
                BOOTSTRAP,
                "--topic",
                w.topic,
                "--rate",
                str(RATE),
                "--duration",
                "3600",
                "--seed",
                "5",
                "--hosts",
                "10",
                "--metrics",
                "4",
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def ts(v: str) -> float:
    return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()


Steady = tuple[str, Callable[[], Any], Any, float]  # what, probe, the value it must keep, seconds


def steady(checks: list[Steady]) -> list[str]:
    """Each ``probe()`` looked at about once a second, all side by side, for its own ``seconds``
    (so the checks take as long as the longest, not their sum); what was seen for each whose
    probe did not equal ``want`` at every look."""
    seen: list[list[Any]] = [[] for _ in checks]
    t0 = time.time()
    while True:
        live = [i for i, c in enumerate(checks) if time.time() - t0 < c[3]]
        if not live:
            break
        for i in live:
            seen[i].append(checks[i][1]())
        time.sleep(1.0)
    return [
        f"{what}: expected {want!r} throughout {seconds:g}s; saw {sorted(set(map(str, got)))}"
        for (what, _, want, seconds), got in zip(checks, seen, strict=True)
        if any(v != want for v in got)
    ]


def process_alive(state: Any) -> bool:
    """Is the process a registry entry recorded still running (same pid and start time)?"""
    try:
        stat = Path(f"/proc/{state.record.pid}/stat").read_text()
    except OSError:
        return False
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0] not in ("Z", "X") and int(fields[19]) == state.record.start_ticks


def check_restored(w: World, stage: str, failed: str, blue_before: Any, green_before: Any) -> list[str]:
    """Everything the rollback of ``failed`` at ``stage`` must have restored; defects found later
    (things that move again) are returned, the rest is asserted at once."""
    st = stage_status(w.state, w.name, stage)
    gate = f"no-marked-rows-{stage}"
    assert st["reason"] == "GateFailed", st
    assert f"gate {gate} failed" in st["message"] and "restored 1.0.0" in st["message"], st["message"]

    # the serving view reads the known good's table, and serves none of the failed version's rows
    view = w.view_sql()
    assert w.table("1.0.0") in view and w.table(failed) not in view, view
    mark = marker(failed)
    wrote = w.presto(f'SELECT count(*) FROM hive."{w.db}"."{w.table(failed)}" WHERE metric LIKE \'{mark}%\'')
    assert wrote[0][0] > 0, f"{failed} wrote no marked rows: the view check below would prove nothing"
    served = w.presto(
        f"SELECT count(*), count_if(metric LIKE '{mark}%'), count_if(metric LIKE 'FAILED-%') FROM {w.view}"
    )
    total, marked, any_marked = served[0]
    assert total > 0, "the serving view returns no rows"
    assert marked == 0 and any_marked == 0, f"the serving view returns {marked} row(s) written by {failed}"
    print(f"serving view: {total} rows, 0 from {failed} (its own table holds {wrote[0][0]}); {view[:160]}…")

    # the known good's job runs: the same process as before the failed version was deployed
    jobs = w.jobs()
    blue = jobs.get(w.job("1.0.0"))
    assert blue is not None and blue.alive, {n: s.alive for n, s in jobs.items()}
    assert (blue.record.pid, blue.record.started_at) == (
        blue_before.record.pid,
        blue_before.record.started_at,
    ), "v1's job was restarted during the rollout of " + failed
    green = jobs.get(w.job(failed))  # stopped and forgotten (its checkpoint is kept)
    assert green is None or not green.alive, f"{failed}'s job still runs after the rollback"
    assert not process_alive(green_before), f"{failed}'s job process {green_before.record.pid} still runs"
    # it had started where the stage's rollout document says (a canary's green is prod's next green)
    recorded = w.rollout_doc("prod").get("start_offsets", {}).get(w.job(failed))
    assert recorded is not None, w.rollout_doc("prod")
    args = green_before.record.args
    started_at = args[args.index("--starting-offsets") + 1]
    assert json.loads(started_at) == json.loads(recorded["offsets"]), (started_at, recorded)
    assert set(json.loads(recorded["offsets"])) == {w.topic}, recorded

    # the DAG and the topic config are v1's (prod's: a canary deploys neither)
    assert w.dag_version() == "1.0.0"
    assert w.retention() == RETENTION["1.0.0"]

    problems = audit_restored(w, stage, failed, gate)

    # nothing moves again afterwards (e.g. a canary starting the rolled-back version again)
    return problems + steady(
        [
            (f"{failed}'s job alive after the {stage} rollback", lambda: w.alive(failed), False, 15),
            (f"the serving view after the {stage} rollback", w.view_sql, view, 5),
            (f"retention.ms after the {stage} rollback", w.retention, RETENTION["1.0.0"], 5),
            (f"v1's job alive after the {stage} rollback", lambda: w.alive("1.0.0"), True, 5),
        ]
    )


def audit_restored(w: World, stage: str, failed: str, gate: str) -> list[str]:
    """The rollback audit record of ``failed`` at ``stage`` lists what it restored and stopped; what
    is missing, as defects."""
    audit = pipectl_json("audit", w.name, "--state", w.url)
    rb = [r for r in audit if r["kind"] == "rollback" and r["stage"] == stage and r["version"] == failed]
    assert len(rb) == 1, [(r["kind"], r["stage"], r["version"], r["outcome"]) for r in audit]
    rec = rb[0]
    assert rec["outcome"] == "rolledBack" and rec["reason"] == "GateFailed", rec
    assert {g["name"]: g["verdict"] for g in rec["gates"]}[gate] == "fail", rec["gates"]
    gates = [
        r
        for r in audit
        if r["kind"] == "gate" and r["stage"] == stage and r["version"] == failed and r["outcome"] == "failed"
    ]
    assert len(gates) == 1, gates
    took = ts(rec["finished_at"]) - ts(gates[0]["finished_at"])
    print(f"{stage}: failing gate verdict → rollback record (RolledBack) {took:.1f}s")

    details = rec.get("details") or {}
    restored = {(i.get("kind"), i.get("name")): i for i in details.get("restored", [])}
    want: dict[tuple[str, str], dict[str, Any]] = {
        ("streamingJob", w.job("1.0.0")): {"version": "1.0.0", "running": True},
        ("table", f"{w.db}.{w.table('1.0.0')}"): {},
    }
    if stage == "prod":  # a canary owns no view, DAG or topic: they are prod's, and untouched
        want[("view", f"{w.db}.host_metrics")] = {"target": f"{w.db}.{w.table('1.0.0')}"}
        want[("dag", f"{w.dag}__prod")] = {"version": "1.0.0"}
        want[("topic", w.topic)] = {
            "config": {"retention.ms": RETENTION["1.0.0"], "cleanup.policy": "delete"}
        }
    problems = []
    if (details.get("from"), details.get("to")) != (failed, "1.0.0"):
        problems.append(
            f"rollback record of {failed} at {stage}: details from/to {details.get('from')}/{details.get('to')}"
        )
    if details.get("stopped") != [w.job(failed)]:
        problems.append(
            f"rollback record of {failed} at {stage}: stopped {details.get('stopped')}, not [{w.job(failed)}]"
        )
    for key, fields in want.items():
        item = restored.get(key)
        if item is None or any(item.get(k) != v for k, v in fields.items()):
            problems.append(f"rollback record of {failed} at {stage}: restored {key} {fields}: {item}")
    if stage != "prod" and [k for k in restored if k[0] in ("view", "dag", "topic")]:
        problems.append(f"rollback record at canary claims prod's items: {sorted(restored)}")
    return problems


def test_rollback_restores_everything(world: World, tmp_path: Path) -> None:
    w = world
    t0 = time.time()
    w.commit("1.0.0", COMMON_GATES)
    w.ctl.start()
    wait_for(lambda: topic_config(BOOTSTRAP, w.topic) is not None, 120, "the stage topic", w.ctl.log)
    start_producer(w, tmp_path / "producer.log")
    w.phase("topic created; producer started", t0)
    for stage in STAGES:
        w.wait_stage(stage, "1.0.0", "Succeeded", 600)
    w.phase("1.0.0 Succeeded at canary and prod", t0)
    assert w.dag_version() == "1.0.0"
    assert w.retention() == RETENTION["1.0.0"]
    assert w.table("1.0.0") in w.view_sql()
    blue = w.jobs()[w.job("1.0.0")]
    assert blue.alive

    defects: list[str] = []

    # --- phase canary: 2.0.0 fails a gate at canary ---------------------------------------------
    w.commit("2.0.0", [*COMMON_GATES, marker_gate("2.0.0", "canary")])
    w.ctl.webhook()
    wait_for(lambda: w.alive("2.0.0"), 300, "2.0.0's job (canary) started", w.ctl.log)
    w.phase("2.0.0's job started beside 1.0.0 (canary)", t0)
    green = w.jobs()[w.job("2.0.0")]
    w.wait_stage("canary", "2.0.0", "RolledBack", 600)
    w.phase("canary RolledBack 2.0.0", t0)
    assert stage_is(w.state, w.name, "prod", "1.0.0", "Succeeded"), stage_status(w.state, w.name, "prod")
    defects += check_restored(w, "canary", "2.0.0", blue, green)
    w.phase("canary: everything restored checked", t0)

    # --- phase prod: 3.0.0 passes canary, fails a gate at prod ----------------------------------
    w.commit("3.0.0", [*COMMON_GATES, marker_gate("3.0.0", "prod")])
    w.ctl.webhook()
    wait_for(lambda: w.alive("3.0.0"), 300, "3.0.0's job (canary) started", w.ctl.log)
    green = w.jobs()[w.job("3.0.0")]
    w.wait_stage("canary", "3.0.0", "Succeeded", 600)
    w.phase("canary Succeeded 3.0.0", t0)

    # prod deploys 3.0.0's DAG and topic config before its gates run: seen live, then restored
    seen: set[str] = set()
    deadline = time.time() + 600
    while not stage_is(w.state, w.name, "prod", "3.0.0", "RolledBack"):
        assert time.time() < deadline, "prod did not roll 3.0.0 back\n" + w.ctl.log.read_text()[-3000:]
        st = stage_status(w.state, w.name, "prod")
        if st.get("version") == "3.0.0" and st.get("phase") in ("Failed", "RollbackFailed", "Succeeded"):
            raise AssertionError(f"prod 3.0.0 ended {st}")
        if "topic" not in seen and w.retention() == RETENTION["3.0.0"]:
            seen.add("topic")
        if "dag" not in seen and w.dag_version() == "3.0.0":
            seen.add("dag")
        time.sleep(1.0)
    w.phase("prod RolledBack 3.0.0", t0)
    assert seen == {"topic", "dag"}, f"only {seen} of 3.0.0 was seen live at prod: the rest proves nothing"
    defects += check_restored(w, "prod", "3.0.0", blue, green)
    w.phase("prod: everything restored checked", t0)

    w.ctl.stop()
    verify = pipectl("audit", "verify", "--state", w.url)
    assert verify.returncode == 0, verify.stderr
    for label, t in w.phases.items():
        print(f"  {t:6.1f}s  {label}")
    assert not defects, "\n".join(defects)
