"""A job the controller starts reads its writer schemas from the controller's registry (issue #15
item 4): a real ``pipectl controller run`` whose Environment sets ``spec.schemaRegistry`` runs the
example job (``manifests/jobs/host_metrics_agg.py``, strategy inPlace) with ``--schema-registry``
and ``--subject`` in its arguments and the controller's registry token in its environment only.

- 1.0.0 (schema v1) runs; events written with v1, in chunks of 100 until the stage has soaked.
- 1.1.0 commits v2 (a field added *first*, with a default: a v1 body read with the v2 reader, or the
  reverse, does not parse) and a new version; the controller restarts the job, which now reads with
  reader v2 and knows writer ids 1 and 2.
- Then, as BACKWARD allows (consumers first), producers still on v1 and producers on v2 write
  chunks in turn until 1.1.0 has soaked: Presto's ``sum(samples)`` is exactly the count written
  and the job counts no undecodable record. Without the registry the v1 records written after the
  change would be decoded with reader v2 only.

The token the job got is read back from its process environment: it reads the registry, is no
principal anywhere else, and no file under the controller's state directory, nor its log, holds it.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from ctlkit import (
    ROOT,
    Ctl,
    commit_files,
    drop_everything,
    free_port,
    init_repo,
    stage_env_yaml,
    stage_status,
    stop_spark_jobs,
    token_for,
    wait_for,
)
from wirekit import SCHEMA_V1, STEP_MS, SUBJECT, T0, events, pe, produce, v2_schema

from controller.model.endpoints import REGISTRY_TOKEN_ENV

JOB = "jobs/host_metrics_agg.py"
CHUNK = 100
CHUNK_EVERY = 5.0  # seconds between chunks: about one micro-batch (trigger 5s)
TABLE_COLUMNS = [
    {"name": "host", "type": "string"}, {"name": "metric", "type": "string"},
    {"name": "window_start", "type": "timestamp"}, {"name": "samples", "type": "bigint"},
    {"name": "avg_value", "type": "double"}, {"name": "max_value", "type": "double"},
]


@dataclass
class World:
    uid: str
    name: str
    repo: Path
    state: Path
    ctl: Ctl

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ctl.port}/schema-registry"

    @property
    def topic(self) -> str:
        return f"it{self.uid}.telemetry.host_metrics"

    @property
    def db(self) -> str:
        return f"it{self.uid}_telemetry"

    @property
    def job(self) -> str:
        return f"dev-{self.name}-host-metrics-agg"

    @property
    def run_dir(self) -> Path:
        return self.state.parent / "spark" / "jobs" / self.job

    def release(self, version: str) -> str:
        spec = {
            "version": version,
            "schemas": [{"name": "host-metric-event", "format": "avro",
                         "path": "schemas/host_metric_event.avsc", "compatibility": "BACKWARD"}],
            "topics": [{"name": "telemetry.host_metrics", "partitions": 1, "replicationFactor": 1,
                        "valueSchema": "host-metric-event"}],
            "tables": [{"name": "telemetry.host_metrics_1m", "columns": TABLE_COLUMNS,
                        "partitionedBy": [{"name": "dt", "type": "string"}], "format": "parquet"}],
            "streamingJobs": [{
                "name": "host-metrics-agg", "entrypoint": JOB,
                "sources": [{"topic": "telemetry.host_metrics", "startingOffsets": "earliest"}],
                "sinks": [{"table": "telemetry.host_metrics_1m"}], "trigger": "5s", "strategy": "inPlace",
                "conf": {"spark.sql.shuffle.partitions": "2"},
            }],
            "rollout": {"stages": ["dev"]},
        }
        doc = {"apiVersion": "pipectl.dev/v1alpha1", "kind": "PipelineRelease", "metadata": {"name": self.name},
               "spec": spec}
        return yaml.safe_dump(doc, sort_keys=False)

    def dev_succeeded(self, version: str) -> bool:
        st = stage_status(self.state, self.name, "dev")
        if st.get("version") == version and st.get("phase") in ("Failed", "RolledBack", "RollbackFailed"):
            raise AssertionError(f"dev {version} ended {st}\n{self.ctl.log.read_text()[-3000:]}")
        return bool(st.get("version") == version and st.get("phase") == "Succeeded")

    def record(self) -> dict[str, Any]:
        return dict(json.loads((self.run_dir.parent / f"{self.job}.json").read_text()))

    def driver_log(self) -> str:
        path = self.run_dir / "driver.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def world(tmp_path: Path, stack: dict[str, Any], spark_env: dict[str, str], unique_name: str) -> Iterator[World]:
    uid = unique_name
    port = free_port()
    env = stage_env_yaml("dev", f"it{uid}.", f"it{uid}_", stack["airflow_dags_folder"])
    env += f'  schemaRegistry: {{url: "http://127.0.0.1:{port}/schema-registry"}}\n'
    files = {"environments/dev.yaml": env, "schemas/host_metric_event.avsc": SCHEMA_V1.read_text(),
             JOB: (ROOT / "manifests" / JOB).read_text()}
    repo = init_repo(tmp_path, files, "environment, schema v1, the example job")
    state = tmp_path / "state" / "state.db"
    w = World(uid, f"swc-{uid}", repo, state, Ctl(repo, state, port, tmp_path / "controller.log", bake="2s"))
    try:
        yield w
    finally:
        w.ctl.stop()
        print(f"cleanup: stopped streaming jobs {stop_spark_jobs(state.parent, repo, spark_env)}")
        drop_everything(uid, [w.db], stack["airflow_dags_folder"], None)
        shutil.rmtree(state.parent / "checkpoints", ignore_errors=True)


def job_token(pid: int) -> str:
    """The registry token in the job process's environment (the runner's spark-submit)."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    found = [e.split(b"=", 1)[1].decode() for e in environ if e.startswith(REGISTRY_TOKEN_ENV.encode() + b"=")]
    assert len(found) == 1, f"{REGISTRY_TOKEN_ENV} is not in the job's environment"
    return found[0]


def metrics_text(w: World, token: str) -> str:
    req = urllib.request.Request(f"http://127.0.0.1:{w.ctl.port}/metrics", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return str(r.read().decode())


def http_status(url: str, token: str) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


@dataclass
class Feed:
    """Events written in chunks, each with its own seed and a start after the previous chunk's last
    event (event time only moves forward, so the job's watermark drops none)."""

    w: World
    chunks: list[tuple[int, int, dt.datetime]] = field(default_factory=list)
    next_start: dt.datetime = T0

    def write(self, schema: Path, schema_id: int, count: int = CHUNK) -> None:
        seed = len(self.chunks) + 1
        assert produce(self.w.url, self.w.topic, schema, seed, count, self.next_start)["schema_id"] == schema_id
        self.chunks.append((seed, count, self.next_start))
        self.next_start += dt.timedelta(milliseconds=STEP_MS * count)

    def until_dev(self, version: str, schemas: list[tuple[Path, int]], timeout: float) -> None:
        """A stage soaks until its job has processed input after its start: write a chunk with each
        schema in turn until the stage has Succeeded on ``version``."""
        deadline = time.monotonic() + timeout
        while True:
            for schema, schema_id in schemas:
                self.write(schema, schema_id)
            if self.w.dev_succeeded(version):
                return
            assert time.monotonic() < deadline, f"dev not Succeeded on {version}\n{self.w.ctl.log.read_text()[-3000:]}"
            time.sleep(CHUNK_EVERY)

    @property
    def total(self) -> int:
        return sum(count for _, count, _ in self.chunks)

    def events(self) -> list[Any]:
        return [e for seed, count, start in self.chunks for e in events(seed, count, start)]


def test_a_controller_started_job_decodes_each_record_with_its_writer_schema(
    world: World, tmp_path: Path, presto_conn: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    commit_files(w.repo, {"releases/swc.yaml": w.release("1.0.0")}, "1.0.0")
    w.ctl.start()
    # the producers' own principal, set after the controller started (its environment has none)
    monkeypatch.setenv(REGISTRY_TOKEN_ENV, token_for(w.state, "alice"))
    wait_for(lambda: f"writer schemas of {SUBJECT}: ids [1]" in w.driver_log(), 240, "1.0.0 fetched its writers",
             w.ctl.log)
    args = w.record()["args"]
    i = args.index("--schema-registry")
    assert args[i : i + 4] == ["--schema-registry", w.url, "--subject", SUBJECT], args
    feed = Feed(w)
    feed.until_dev("1.0.0", [(SCHEMA_V1, 1)], 300)

    v2 = tmp_path / "v2.avsc"
    v2.write_text(v2_schema())
    commit_files(w.repo, {"releases/swc.yaml": w.release("1.1.0"), "schemas/host_metric_event.avsc": v2_schema()},
                 "1.1.0: schema v2, region first with a default")
    w.ctl.webhook()
    # BACKWARD: the consumer goes first (restarted with writer ids 1 and 2), then the producers
    wait_for(lambda: f"writer schemas of {SUBJECT}: ids [1, 2]" in w.driver_log(), 300, "1.1.0 fetched its writers",
             w.ctl.log)
    rec = w.record()
    assert rec["version"] == "1.1.0" and rec["args"][i : i + 4] == args[i : i + 4], rec["args"]
    before = len(feed.chunks)
    # producers still on v1 beside producers on v2: the new job reads with reader v2
    feed.until_dev("1.1.0", [(SCHEMA_V1, 1), (v2, 2)], 300)
    assert len(feed.chunks) - before >= 2

    cur = presto_conn(schema=w.db).cursor()

    def samples() -> int:
        cur.execute("SELECT coalesce(sum(samples), 0) FROM host_metrics_1m")
        return int(cur.fetchall()[0][0])

    wait_for(lambda: samples() >= feed.total, 240, f"{feed.total} events in the table", w.ctl.log)
    cur.execute("SELECT sum(samples), count(*) FROM host_metrics_1m")
    assert tuple(cur.fetchall()[0]) == (feed.total, len(pe.expected_aggregates(feed.events())))
    status = json.loads((w.run_dir / "status.json").read_text())
    assert status["pipectl"]["undecodableRecords"] == 0, status["pipectl"]
    # and the controller exports the count (pipectl_streaming_undecodable_records)
    series = f'pipectl_streaming_undecodable_records{{release="{w.name}",stage="dev",streaming_job="{w.job}"}}'
    wait_for(lambda: f"{series} 0.0" in metrics_text(w, token_for(w.state, "alice")), 60,
             f"{series} 0.0 on /metrics", w.ctl.log)

    # the token: in the job's environment, read-only, and written down nowhere
    token = job_token(int(rec["pid"]))
    assert http_status(f"{w.url}/subjects/{SUBJECT}/versions", token) == 200
    assert http_status(f"http://127.0.0.1:{w.ctl.port}/api/v1/releases", token) == 401
    files = [p for p in w.state.parent.rglob("*") if p.is_file()] + [w.ctl.log]
    assert [p for p in files if token.encode() in p.read_bytes()] == []
