"""Rolling back an in-place streaming job on the real stack: the known good restarts from the
offsets recorded where the failed version started, on a fresh checkpoint.

A real ``pipectl controller run`` drives a release made of the example streaming job
(``manifests/jobs/host_metrics_agg.py``, strategy inPlace, with the example Avro schema and the
example producer writing into the stage topic for the whole test) through one stage, prod (one
Spark job on a 2-core machine).

- v1 (1.0.0) is promoted and processes a few batches.
- v2 (2.0.0) changes the job (its rows carry the metric prefix ``FAILED-2.0.0-``) and has a gate
  that fails on exactly those rows. In place, v2 replaces v1's job under the same name and resumes
  from v1's checkpoint; before that, the controller records in prod's rollout document where v2
  starts reading (v1's committed position).

After the automatic rollback, read from the backends themselves:

- the job runs v1 again, on a checkpoint directory that is neither the stage's own (which v2
  advanced) nor anything but the one the rollout document pins for it;
- Spark's own record of where that fresh checkpoint started (``sources/0/0``, the Kafka source's
  initial offsets) equals the recorded offsets, which are the end offsets of a batch committed in
  the old checkpoint (v1's committed position, where v2 started);
- the fresh checkpoint commits batches (v1 reprocesses what v2 read);
- the rollback audit record lists the job as stopped (the failed version's run) and as restored;
- for 15 s afterwards the job is not restarted again.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from ctlkit import (
    DAG_SOURCE,
    ROOT,
    Ctl,
    commit_files,
    drop_everything,
    free_port,
    init_repo,
    pipectl_json,
    stage_env_yaml,
    stage_status,
    stop_spark_jobs,
    topic_config,
    wait_for,
)

BOOTSTRAP = "127.0.0.1:9092"
JOB = "jobs/host_metrics_agg.py"
SELECT_FIELDS = '"event.host", "event.metric", "event.value", "event.event_time", DECODE_ERROR'
MARK = "FAILED-2.0.0-"
GATES: list[dict[str, Any]] = [
    {"name": "keeps-up", "type": "streamingHealth", "maxLagSeconds": 600},
    {
        "name": "aggregates-present",
        "type": "dataQuality",
        "query": "SELECT count(*) FROM telemetry.host_metrics_1m",
        "expect": "> 0",
    },
]
MARKER_GATE = {
    "name": "no-marked-rows",
    "type": "dataQuality",
    "query": f"SELECT count(*) FROM telemetry.host_metrics_1m WHERE metric LIKE '{MARK}%'",
    "expect": "== 0",
}


def job_source(version: str) -> str:
    code = (ROOT / "manifests" / JOB).read_text()
    if version == "1.0.0":
        return code
    assert code.count(SELECT_FIELDS) == 1, "the example job changed: plant the marker elsewhere"
    planted = (
        f'"event.host", F.concat(F.lit("{MARK}"), F.col("event.metric")).alias("metric"), '
        '"event.value", "event.event_time", DECODE_ERROR'
    )
    return code.replace(SELECT_FIELDS, planted)


@dataclass
class World:
    uid: str
    name: str
    repo: Path
    state: Path
    ctl: Ctl
    spark_env: dict[str, str]
    producer: subprocess.Popen[bytes] | None = None

    @property
    def topic(self) -> str:
        return f"it{self.uid}.telemetry.host_metrics"

    @property
    def db(self) -> str:
        return f"it{self.uid}_telemetry"

    @property
    def job(self) -> str:
        return f"prod-{self.name}-host-metrics-agg"

    def release(self, version: str) -> str:
        gates = GATES + ([MARKER_GATE] if version != "1.0.0" else [])
        doc = {
            "apiVersion": "pipectl.dev/v1alpha1",
            "kind": "PipelineRelease",
            "metadata": {"name": self.name},
            "spec": {
                "version": version,
                "schemas": [
                    {"name": "host-metric-event", "format": "avro",
                     "path": "schemas/host_metric_event.avsc", "compatibility": "BACKWARD"}
                ],
                "topics": [
                    {"name": "telemetry.host_metrics", "partitions": 2, "replicationFactor": 1,
                     "valueSchema": "host-metric-event"}
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
                "streamingJobs": [
                    {
                        "name": "host-metrics-agg",
                        "entrypoint": JOB,
                        "sources": [{"topic": "telemetry.host_metrics", "startingOffsets": "earliest"}],
                        "sinks": [{"table": "telemetry.host_metrics_1m"}],
                        "trigger": "5s",
                        "strategy": "inPlace",
                        "conf": {"spark.sql.shuffle.partitions": "2"},
                    }
                ],
                "dags": [{"id": f"hm_{self.uid}", "path": "dags/hm_daily.py"}],
                "rollout": {"stages": ["prod"], "gates": gates, "rollback": {"automatic": True}},
            },
        }
        return yaml.safe_dump(doc, sort_keys=False)

    def commit(self, version: str) -> None:
        files = {"releases/hm.yaml": self.release(version), JOB: job_source(version)}
        commit_files(self.repo, files, f"{self.name} {version}")

    def jobs(self) -> dict[str, Any]:
        from controller.adapters.spark import LocalRunner

        return dict(LocalRunner(self.state.parent / "spark", self.repo, self.spark_env).list())

    def rollout_doc(self) -> dict[str, Any]:
        con = sqlite3.connect(self.state)
        try:
            row = con.execute("SELECT value FROM kv WHERE key = ?", (f"rollout/{self.name}/prod",)).fetchone()
        finally:
            con.close()
        return json.loads(row[0]) if row else {}

    def wait_prod(self, version: str, phase: str, timeout: float) -> None:
        def ok() -> bool:
            st = stage_status(self.state, self.name, "prod")
            ended = ("Failed", "RolledBack", "RollbackFailed", "Succeeded")
            if st.get("version") == version and st.get("phase") in ended and st.get("phase") != phase:
                raise AssertionError(f"prod {version} ended {st}\n{self.ctl.log.read_text()[-3000:]}")
            return st.get("version") == version and st.get("phase") == phase

        wait_for(ok, timeout, f"prod {phase} on {version}", self.ctl.log)


@pytest.fixture
def world(tmp_path: Path, stack: dict[str, Any], spark_env: dict[str, str], unique_name: str) -> Iterator[World]:
    uid = unique_name
    folder = stack["airflow_dags_folder"]
    files = {
        "environments/prod.yaml": stage_env_yaml("prod", f"it{uid}.", f"it{uid}_", folder),
        "dags/hm_daily.py": DAG_SOURCE,
    }
    for rel in ("schemas/host_metric_event.avsc", "tools/produce_events.py"):
        files[rel] = (ROOT / "manifests" / rel).read_text()
    repo = init_repo(tmp_path, files, "environments")
    state = tmp_path / "state" / "state.db"
    ctl = Ctl(repo, state, free_port(), tmp_path / "controller.log")
    w = World(uid, f"rip-{uid}", repo, state, ctl, spark_env)
    try:
        yield w
    finally:
        if w.producer and w.producer.poll() is None:
            os.killpg(w.producer.pid, signal.SIGTERM)
            w.producer.wait(timeout=30)
        ctl.stop()
        print(f"cleanup: stopped streaming jobs {stop_spark_jobs(state.parent, repo, spark_env)}")
        drop_everything(uid, [w.db], folder, f"hm_{uid}__*")
        shutil.rmtree(state.parent / "checkpoints", ignore_errors=True)


def start_producer(w: World, log: Path) -> None:
    args = ["--bootstrap-servers", BOOTSTRAP, "--topic", w.topic, "--rate", "20", "--duration", "3600",
            "--seed", "5", "--hosts", "10", "--metrics", "4"]
    with log.open("ab") as out:
        w.producer = subprocess.Popen(
            [sys.executable, str(w.repo / "tools" / "produce_events.py"), *args],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )


def batch_offsets(checkpoint: str) -> list[dict[str, Any]]:
    """The Kafka end offsets of every batch Spark logged in ``checkpoint`` (``offsets/N``: a version
    line, the batch metadata, then one line per source)."""
    out = []
    for f in sorted((Path(checkpoint) / "offsets").glob("[0-9]*")):
        lines = f.read_text().splitlines()
        if len(lines) >= 3:
            out.append(json.loads(lines[2]))
    return out


def initial_offsets(checkpoint: str) -> dict[str, Any] | None:
    """Where the Kafka source of a query on ``checkpoint`` started (``sources/0/0``), or None yet."""
    f = Path(checkpoint) / "sources" / "0" / "0"
    if not f.exists():
        return None
    text = f.read_text()
    return dict(json.loads(text[text.index("{"):]))


def test_an_in_place_job_restarts_from_the_recorded_offsets_on_a_fresh_checkpoint(
    world: World, tmp_path: Path
) -> None:
    w = world
    w.commit("1.0.0")
    w.ctl.start()
    wait_for(lambda: topic_config(BOOTSTRAP, w.topic) is not None, 120, "the stage topic", w.ctl.log)
    start_producer(w, tmp_path / "producer.log")
    w.wait_prod("1.0.0", "Succeeded", 600)
    v1 = w.jobs()[w.job]
    own = v1.record.effective_checkpoint
    wait_for(lambda: len(batch_offsets(own)) >= 2, 120, "v1 committed batches", w.ctl.log)

    w.commit("2.0.0")
    w.ctl.webhook()
    w.wait_prod("2.0.0", "RolledBack", 600)

    doc = w.rollout_doc()
    rec = doc["inplace_starts"][w.job]
    assert (rec["version"], rec["checkpoint"]) == ("2.0.0", own), rec
    recorded = json.loads(rec["offsets"])
    assert set(recorded) == {w.topic} and all(int(o) >= 0 for o in recorded[w.topic].values()), recorded
    # the committed position: the end of a batch v1 committed in the old checkpoint, where v2 resumed
    assert recorded in batch_offsets(own), (recorded, batch_offsets(own)[-3:])

    pin = doc["checkpoints"][w.job]
    fresh = pin["checkpoint"]
    assert fresh != own and fresh.startswith(own + "@after-v2_0_0-") and pin["offsets"] == rec["offsets"], pin
    job = w.jobs()[w.job]
    assert job.alive and job.record.version == "1.0.0", job
    assert job.record.effective_checkpoint == fresh, job.record
    args = job.record.args
    assert json.loads(args[args.index("--starting-offsets") + 1]) == recorded
    # Spark's own record of where the query on the fresh checkpoint started, and that it runs
    wait_for(lambda: initial_offsets(fresh) is not None, 120, "the fresh checkpoint's start", w.ctl.log)
    assert initial_offsets(fresh) == recorded, (initial_offsets(fresh), recorded)
    wait_for(lambda: (Path(fresh) / "commits" / "0").exists(), 180, "a batch committed on the fresh checkpoint",
             w.ctl.log)

    audit = pipectl_json("audit", w.name, "--state", f"sqlite:///{w.state}")
    [rb] = [r for r in audit if r["kind"] == "rollback" and r["version"] == "2.0.0"]
    assert rb["outcome"] == "rolledBack", rb
    assert rb["details"]["stopped"] == [w.job], rb["details"]
    restored = {(i["kind"], i["name"]): i for i in rb["details"]["restored"]}
    assert restored[("streamingJob", w.job)]["version"] == "1.0.0", restored

    pid = job.record.pid
    deadline = time.time() + 15
    while time.time() < deadline:  # held: not moved or restarted again
        now = w.jobs()[w.job]
        assert now.alive and now.record.pid == pid and now.record.effective_checkpoint == fresh, now.record
        time.sleep(1.0)
