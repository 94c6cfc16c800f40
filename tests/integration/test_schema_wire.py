"""The Confluent wire format end to end on the real stack (issue #15 item 4): the example producer
(``manifests/tools/produce_events.py``) writes N events with schema v1 and, mid-stream, M more with
a compatible v2 (a field added first, with a default: a v2 body read as v1 would not parse), each
record framed with the id a running controller's registry serves for its schema; a few corrupt
records go in between. The example job (``manifests/jobs/host_metrics_agg.py``, reader schema v1,
writer schemas fetched from the same registry at start) must put exactly N + M events in the table
as Presto reads it, and count the corrupt ones in its status file, per reason, without writing
them."""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from ctlkit import Ctl, cleanup, commit_files, free_port, init_repo, stage_env_yaml, token_for
from wirekit import REPO, SCHEMA_V1, SUBJECT, T0, events, pe, v2_schema
from wirekit import produce as produce_to

JOB = REPO / "manifests" / "jobs" / "host_metrics_agg.py"
N, M = 300, 200
JOB_TIMEOUT = 600.0  # JVM start and one batch on a shared 2-core machine


def release(name: str, version: str) -> str:
    return f"""\
apiVersion: pipectl.dev/v1alpha1
kind: PipelineRelease
metadata:
  name: {name}
spec:
  version: {version}
  schemas:
    - name: host-metric-event
      path: schemas/host_metric_event.avsc
      compatibility: BACKWARD
  topics:
    - name: telemetry.host_metrics
      partitions: 1
      replicationFactor: 1
      valueSchema: host-metric-event
  rollout:
    stages: [dev]
    gates:
      - name: schema-compatible
        type: schemaCompatibility
"""


def spark_jars(stack: dict[str, Any]) -> str:
    jars = list(stack.get("spark_jars") or [])
    if not any("spark-avro" in j for j in jars):
        found = sorted(glob.glob(str(REPO / ".stack" / "jars" / "*" / "spark-avro_2.12-*.jar")))
        assert found, "spark-avro is not on the stack's classpath (see test_example_job_idempot.spark_jars)"
        jars.append(found[-1])
    return ",".join(jars)


@pytest.fixture
def wire(tmp_path: Path, stack: dict[str, Any], unique_name: str) -> Iterator[dict[str, Any]]:
    """A controller serving v1 then v2 of the example schema (two commits), a fresh topic."""
    name = f"wf-{unique_name}"
    env = stage_env_yaml("dev", f"it{unique_name}.", f"it{unique_name}_", stack["airflow_dags_folder"])
    repo = init_repo(
        tmp_path,
        {"environments/dev.yaml": env, "releases/rc.yaml": release(name, "1.0.0"),
         "schemas/host_metric_event.avsc": SCHEMA_V1.read_text()},
        "1.0.0",
    )
    commit_files(repo, {"releases/rc.yaml": release(name, "1.1.0"), "schemas/host_metric_event.avsc": v2_schema()},
                 "1.1.0: region first, default eu")
    (tmp_path / "v2.avsc").write_text(v2_schema())
    topic = f"it{unique_name}.wire.host_metrics"
    admin = AdminClient({"bootstrap.servers": stack["kafka_bootstrap"]})
    for fut in admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)]).values():
        fut.result(timeout=30)
    ctl = Ctl(repo, tmp_path / "state" / "state.db", free_port(), tmp_path / "controller.log")
    ctl.start()
    try:
        yield {"ctl": ctl, "token": token_for(ctl.state, "alice"), "topic": topic, "db": f"it{unique_name}_wire",
               "url": f"http://127.0.0.1:{ctl.port}/schema-registry", "v2": tmp_path / "v2.avsc"}
    finally:
        ctl.stop()
        from pyhive import hive

        con = hive.connect("127.0.0.1", 10000, auth="NOSASL")
        con.cursor().execute(f"DROP DATABASE IF EXISTS `it{unique_name}_wire` CASCADE")
        con.close()
        cleanup(stack, unique_name, name)


def produce(w: dict[str, Any], schema: Path, seed: int, count: int, start: dt.datetime) -> dict[str, Any]:
    out: dict[str, Any] = produce_to(w["url"], w["topic"], schema, seed, count, start)
    return out


CORRUPT = [
    b"\x01\x00\x00\x00\x01\x12host-0001",  # magic byte 1
    b"\x00\x00",  # shorter than the header
    b"\x00\x00\x00\x00\x63\x12host-0001",  # id 99: no such schema
    b"\x00\x00\x00\x00\x01\xff\xff\xff",  # id 1, a body that is not Avro
]


def test_schema_change_mid_stream_loses_no_record(
    wire: dict[str, Any], stack: dict[str, Any], spark_env: dict[str, str], tmp_path: Path,
    presto_conn: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIPECTL_SCHEMA_REGISTRY_TOKEN", wire["token"])
    first = produce(wire, SCHEMA_V1, 1, N, T0)
    p = Producer({"bootstrap.servers": "127.0.0.1:9092"})
    for i, value in enumerate(CORRUPT):
        p.produce(wire["topic"], value=value, partition=i % 2)
    assert p.flush(30) == 0
    second = produce(wire, wire["v2"], 2, M, T0 + dt.timedelta(minutes=5))
    # the registry of the two commits: v1 first seen in 1.0.0, v2 in 1.1.0
    assert (first["schema_id"], second["schema_id"]) == (1, 2)

    status = tmp_path / "status.json"
    env = {**spark_env, "PIPECTL_SCHEMA_REGISTRY_TOKEN": wire["token"],
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), spark_env.get("PYTHONPATH")) if p)}
    argv = [
        str(Path(spark_env["SPARK_HOME"]) / "bin" / "spark-submit"), "--master", "local[2]",
        "--driver-memory", "512m", "--conf", f"spark.jars={spark_jars(stack)}",
        "--conf", "spark.sql.shuffle.partitions=2", str(JOB),
        "--bootstrap-servers", "127.0.0.1:9092", "--topic", wire["topic"],
        "--table", f"{wire['db']}.host_metrics_1m", "--create-table",
        "--checkpoint", str(tmp_path / "checkpoint"), "--query-name", f"{wire['db'].replace('_', '-')}-agg",
        "--version", "1.1.0", "--available-now", "--status-file", str(status),
        "--schema-registry", wire["url"], "--subject", SUBJECT,
    ]
    log = tmp_path / "job.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        rc = proc.wait(timeout=JOB_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"job did not finish in {JOB_TIMEOUT}s; log: {log}") from None
    text = log.read_text(errors="replace")
    assert rc == 0, text[-4000:]
    assert "writer schemas of telemetry.host_metrics-value: ids [1, 2]" in text

    cur = presto_conn(schema=wire["db"]).cursor()
    cur.execute("SELECT sum(samples), count(*) FROM host_metrics_1m")
    total, rows = cur.fetchall()[0]
    produced = [*events(1, N, T0), *events(2, M, T0 + dt.timedelta(minutes=5))]
    assert (total, rows) == (N + M, len(pe.expected_aggregates(produced)))

    reported = json.loads(status.read_text())["pipectl"]
    assert reported == {
        "undecodableRecords": 4, "undecodableByReason": {"body": 1, "magic": 2, "unknown_id": 1},
    }
