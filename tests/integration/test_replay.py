"""``pipectl replay`` against the real stack: the example streaming job (manifests/jobs/host_metrics_agg.py)
of a release at a stage of its own, replayed from the Kafka offsets of a time into its own
checkpoint and table, run by the Spark adapter's LocalRunner (spark-submit, local[2]).

Events are produced with Kafka record timestamps equal to their event times: a first set before
T, a second one from T on. A replay from T writes exactly the second set's aggregates (checked
through Presto against aggregates computed from the same events) and leaves the release's own
table alone. ``--to-time`` needs the job's ``--ending-offsets``: without it the replay is refused
with instructions; with it (the job as is if it has the option, else a copy with the proposed
option added in the test's repository) the replay stops at the offsets of T2.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import math
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from ctlkit import stage_env_yaml
from typer.testing import CliRunner

from controller.audit.ledger import Ledger
from controller.plan.replay import supports_option
from controller.store.db import Store

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
RELEASE = "host-metrics"
T0 = dt.datetime(2026, 3, 1, 23, 50, tzinfo=dt.UTC)  # first set: 60 s of events from here
T = dt.datetime(2026, 3, 1, 23, 59, 30, tzinfo=dt.UTC)  # replay from here: second set, across midnight
STEP_MS = 20.0
COUNT = 3000  # per set: 60 s of event time


def _load_producer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("produce_events", MANIFESTS / "tools" / "produce_events.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("produce_events", mod)
    spec.loader.exec_module(mod)
    return mod


pe = _load_producer()


def _ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def release_yaml(stage: str) -> str:
    return f"""\
apiVersion: pipectl.dev/v1alpha1
kind: PipelineRelease
metadata:
  name: {RELEASE}
spec:
  version: 1.0.0
  topics:
    - name: telemetry.host_metrics
      partitions: 3
      replicationFactor: 1
  tables:
    - name: telemetry.host_metrics_1m
      columns:
        - {{name: host, type: string}}
        - {{name: metric, type: string}}
        - {{name: window_start, type: timestamp}}
        - {{name: samples, type: bigint}}
        - {{name: avg_value, type: double}}
        - {{name: max_value, type: double}}
      partitionedBy:
        - {{name: dt, type: string}}
  streamingJobs:
    - name: host-metrics-agg
      entrypoint: jobs/host_metrics_agg.py
      sources:
        - topic: telemetry.host_metrics
      sinks:
        - table: telemetry.host_metrics_1m
      trigger: 2s
      strategy: blueGreen
      conf:
        spark.sql.shuffle.partitions: "2"
  rollout:
    stages: [{stage}]
"""


@dataclass
class Env:
    stage: str
    repo: Path
    state: Path
    topic: str
    db: str
    presto: Callable[[str], list[tuple[Any, ...]]]

    def replay(self, *args: str) -> Any:
        from controller.cli.main import app

        return CliRunner().invoke(
            app, ["replay", RELEASE, "--stage", self.stage, "--repo", str(self.repo),
                  "--state", f"sqlite:///{self.state}", *args],
        )

    def aggregates(self, table: str) -> list[tuple[Any, ...]]:
        rows = self.presto(
            f'SELECT host, metric, CAST(window_start AS varchar), samples, avg_value, max_value, dt '
            f'FROM hive."{self.db}"."{table}" ORDER BY host, metric, window_start'
        )
        return [(h, m, ws[:19], n, a, mx, d) for h, m, ws, n, a, mx, d in rows]


def expected(events: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (r["host"], r["metric"], r["window_start"], r["samples"], r["avg_value"], r["max_value"], r["dt"])
        for r in pe.expected_aggregates(events)
    ]


def assert_exact(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]]) -> None:
    assert len(got) == len(want), f"{len(got)} rows, expected {len(want)}"
    for g, w in zip(got, want, strict=True):
        assert (g[:4], g[5:]) == (w[:4], w[5:]), f"{g} != {w}"
        assert math.isclose(g[4], w[4], rel_tol=1e-12), f"avg {g} != {w}"


def produce(bootstrap: str, topic: str, events: list[Any]) -> None:
    """Events in order, each with its event time as the Kafka record timestamp."""
    enc = pe.Encoder(MANIFESTS / "schemas" / "host_metric_event.avsc")
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20})
    for e in events:
        producer.produce(topic, value=enc.encode(e), key=e.host.encode(), timestamp=e.event_time_ms)
        producer.poll(0)
    assert producer.flush(60) == 0


@pytest.fixture
def env(
    stack: dict[str, Any], unique_name: str, tmp_path: Path, hive_conn: Callable[..., Any],
    presto_conn: Callable[..., Any],
) -> Iterator[Env]:
    stage = f"rp{unique_name}"
    repo = tmp_path / "repo"
    for d in ("releases", "environments", "jobs", "schemas"):
        (repo / d).mkdir(parents=True)
    (repo / "releases" / "host-metrics.yaml").write_text(release_yaml(stage))
    (repo / "environments" / f"{stage}.yaml").write_text(
        stage_env_yaml(stage, f"{stage}.", f"{stage}_", stack["airflow_dags_folder"], spark_master="local[2]")
    )
    shutil.copy(MANIFESTS / "jobs" / "host_metrics_agg.py", repo / "jobs" / "host_metrics_agg.py")
    shutil.copy(MANIFESTS / "schemas" / "host_metric_event.avsc", repo / "schemas" / "host_metric_event.avsc")

    topic = f"{stage}.telemetry.host_metrics"
    admin = AdminClient({"bootstrap.servers": stack["kafka_bootstrap"]})
    # Record timestamps are the events' (months back): no time-based retention, or the broker
    # deletes them at once.
    new = NewTopic(topic, num_partitions=3, replication_factor=1, config={"retention.ms": "-1"})
    for fut in admin.create_topics([new]).values():
        fut.result(timeout=30)
    conn = presto_conn()

    def presto(sql: str) -> list[tuple[Any, ...]]:
        cur = conn.cursor()
        cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()]

    e = Env(stage, repo, tmp_path / "state" / "state.db", topic, f"{stage}_telemetry", presto)
    yield e
    try:
        hive_conn().cursor().execute(f"DROP DATABASE IF EXISTS `{e.db}` CASCADE")
    finally:
        for fut in admin.delete_topics([topic]).values():
            try:
                fut.result(timeout=30)
            except Exception:
                pass


def test_replay_from_a_time_processes_only_events_at_or_after_it(env: Env, stack: dict[str, Any]) -> None:
    before = list(pe.generate_events(31, COUNT, 20, 4, _ms(T0), STEP_MS))
    after = list(pe.generate_events(32, COUNT, 20, 4, _ms(T), STEP_MS))
    produce(stack["kafka_bootstrap"], env.topic, before + after)
    tag = "replay_20260301t235930"
    table = f"host_metrics_1m__v1_0_0__{tag}"

    dry = env.replay("--from-time", T.isoformat(), "--available-now", "--dry-run", "-o", "json")
    assert dry.exit_code == 0, dry.output
    plan = json.loads(dry.output[dry.output.index("{"):])
    assert plan["tables"] == [f"{env.db}.{table}"] and plan["tag"] == tag
    assert plan["job"] == f"{env.stage}-host-metrics-host-metrics-agg-v1-0-0-{tag.replace('_', '-')}"
    assert plan["records"] == COUNT, plan  # offsets_for_times(T) .. end: exactly the second set
    assert "--available-now" in plan["args"]

    res = env.replay("--from-time", T.isoformat(), "--available-now", "--wait", "--timeout", "12m", "-o", "json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{"):])
    assert out["succeeded"] and out["finished"], out

    got = env.aggregates(table)
    assert_exact(got, expected(after))
    assert sum(r[3] for r in got) == COUNT
    assert {r[6] for r in got} == {"2026-03-01", "2026-03-02"}
    assert min(r[2] for r in got) >= T.strftime("%Y-%m-%d %H:%M"), "events before T were replayed"
    # The release's own table was not created, let alone written.
    tables = {r[0] for r in env.presto(f'SHOW TABLES FROM hive."{env.db}"')}
    assert tables == {table}

    # The same replay again: its own checkpoint has nothing new; the rows stay exact.
    again = env.replay("--from-time", T.isoformat(), "--available-now", "--wait", "--timeout", "12m")
    assert again.exit_code == 0, again.output
    assert_exact(env.aggregates(table), expected(after))

    records = [r for r in Ledger(Store(f"sqlite:///{env.state}")).records(RELEASE) if r["kind"] == "replay"]
    assert [r["outcome"] for r in records] == ["started", "completed", "started", "completed"]
    assert records[0]["lineage"] == {
        "inputs": [f"kafka:{env.topic}"], "outputs": [f"hive:{env.db}.{table}"], "columns": {},
    }


def test_replay_to_a_time_stops_at_its_offsets(env: Env, stack: dict[str, Any]) -> None:
    after = list(pe.generate_events(41, COUNT, 20, 4, _ms(T), STEP_MS))
    produce(stack["kafka_bootstrap"], env.topic, after)
    t2 = T + dt.timedelta(seconds=25)
    job = env.repo / "jobs" / "host_metrics_agg.py"
    source = job.read_text()
    assert supports_option(source.encode(), "--ending-offsets")  # through the job frame

    # a job that cannot stop at given offsets is refused, with what to add
    job.write_text("print('a job with only the runner arguments')\n")
    refused = env.replay("--from-time", T.isoformat(), "--to-time", t2.isoformat())
    assert refused.exit_code == 1
    assert "has no --ending-offsets option" in refused.output, refused.output
    job.write_text(source)

    res = env.replay("--from-time", T.isoformat(), "--to-time", t2.isoformat(), "--wait", "--timeout", "12m",
                     "-o", "json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{"):])
    want = [e for e in after if e.event_time_ms < _ms(t2)]
    assert out["records"] == len(want) and out["succeeded"], out
    got = env.aggregates("host_metrics_1m__v1_0_0__replay_20260301t235930_20260301t235955")
    assert_exact(got, expected(want))
