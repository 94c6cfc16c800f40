"""The example streaming job (manifests/jobs/host_metrics_agg.py) against the real local stack.

Events with known aggregates go into a fresh Kafka topic (through the producer CLI); the job runs
as its own ``spark-submit`` process with the stack's SPARK_CONF_DIR; rows are read back through
Presto and compared with the aggregates computed from the same deterministic events.

- ``--available-now`` gives exactly the expected rows; a second run on the same checkpoint adds
  no duplicates; late events (inside the watermark) merge into their minute, too-late ones are
  dropped.
- ``kill -9`` of the job while a batch is being written (after it created the batch's first
  partition directory), then a restart on the same checkpoint, gives the same exact rows; Presto
  readers polling during the run never see a duplicate key or an error.
"""

from __future__ import annotations

import datetime as dt
import glob
import importlib.util
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
JOB = REPO / "manifests" / "jobs" / "host_metrics_agg.py"
PRODUCER = REPO / "manifests" / "tools" / "produce_events.py"
JOB_TIMEOUT = 900.0  # JVM start + batches on a shared 2-core machine
START = dt.datetime(2026, 3, 1, 23, 58, 30, tzinfo=dt.UTC)  # events span midnight: two dt partitions
STEP_MS = 40.0


def _load_producer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("produce_events", PRODUCER)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("produce_events", mod)
    spec.loader.exec_module(mod)
    return mod


pe = _load_producer()


def _ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def spark_jars(stack: dict[str, Any]) -> list[str]:
    """The stack's Kafka jars plus spark-avro (from the stack if it ships it, else .stack/jars/extra)."""
    jars = list(stack.get("spark_jars") or [])
    if not any("spark-avro" in j for j in jars):
        found = sorted(glob.glob(str(REPO / ".stack" / "jars" / "*" / "spark-avro_2.12-*.jar")))
        if not found:
            pytest.fail(
                "spark-avro is not on the stack's classpath; fetch it with: mvn dependency:copy "
                "-Dartifact=org.apache.spark:spark-avro_2.12:3.5.9 -DoutputDirectory=.stack/jars/extra"
            )
        jars.append(found[-1])
    return jars


class Pipeline:
    """One test's topic, table and job runs."""

    def __init__(self, stack: dict[str, Any], spark_env: dict[str, str], tmp: Path, name: str) -> None:
        self.stack = stack
        self.env = {**spark_env, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), spark_env.get("PYTHONPATH")) if p)}
        self.tmp = tmp
        self.topic = f"it.{name}.host_metrics"
        self.db = f"it_{name}"
        self.table = "host_metrics_1m"
        self.query = f"it-{name}-host-metrics-agg"
        self.checkpoint = tmp / "checkpoint"
        self.status = tmp / "status.json"
        self.jars = ",".join(spark_jars(stack))
        self.runs = 0

    @property
    def table_dir(self) -> Path:
        return Path(self.stack["warehouse_dir"]) / f"{self.db}.db" / self.table

    def create(self, hive_conn: Callable[..., Any]) -> None:
        admin = AdminClient({"bootstrap.servers": self.stack["kafka_bootstrap"]})
        for fut in admin.create_topics([NewTopic(self.topic, num_partitions=3, replication_factor=1)]).values():
            fut.result(timeout=30)
        cur = hive_conn().cursor()
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{self.db}`")
        cur.execute(self.table_ddl())

    def table_ddl(self) -> str:
        return (
            f"CREATE TABLE `{self.db}`.`{self.table}` (host STRING, metric STRING, window_start TIMESTAMP, "
            "samples BIGINT, avg_value DOUBLE, max_value DOUBLE) PARTITIONED BY (dt STRING) STORED AS PARQUET"
        )

    def drop(self, hive_conn: Callable[..., Any]) -> None:
        try:
            hive_conn().cursor().execute(f"DROP DATABASE IF EXISTS `{self.db}` CASCADE")
        finally:
            admin = AdminClient({"bootstrap.servers": self.stack["kafka_bootstrap"]})
            for fut in admin.delete_topics([self.topic]).values():
                try:
                    fut.result(timeout=30)
                except Exception:
                    pass

    def produce(self, *sets: tuple[int, int, dt.datetime, float], rate: float = 0) -> list[Any]:
        """Send each (seed, count, start, step_ms) set through its own producer CLI process, all at
        once (so the sets interleave in the topic); return the same events computed in-process."""
        procs = [
            subprocess.Popen(
                [sys.executable, str(PRODUCER), "--bootstrap-servers", self.stack["kafka_bootstrap"],
                 "--topic", self.topic, "--count", str(count), "--seed", str(seed), "--rate", str(rate),
                 "--event-time-start", start.isoformat(), "--event-time-step-ms", str(step)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for seed, count, start, step in sets
        ]
        events: list[Any] = []
        for proc, (seed, count, start, step) in zip(procs, sets, strict=True):
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-2000:]
            assert f'"sent": {count}' in out and f'"delivered": {count}' in out, out
            events += pe.generate_events(seed, count, 20, 4, _ms(start), step)
        return events

    def argv(self, *extra: str) -> list[str]:
        return [
            str(Path(self.env["SPARK_HOME"]) / "bin" / "spark-submit"),
            "--master", "local[2]", "--driver-memory", "512m",
            "--conf", f"spark.jars={self.jars}",
            "--conf", "spark.sql.shuffle.partitions=4",
            str(JOB),
            "--bootstrap-servers", self.stack["kafka_bootstrap"],
            "--topic", self.topic,
            "--table", f"{self.db}.{self.table}",
            "--checkpoint", str(self.checkpoint),
            "--trigger", "2s",
            "--starting-offsets", "earliest",
            "--query-name", self.query,
            "--version", "1.0.0",
            "--status-file", str(self.status),
            *extra,
        ]

    def start(self, *extra: str) -> tuple[subprocess.Popen[bytes], Path]:
        self.runs += 1
        log = self.tmp / f"job-{self.runs}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(self.argv(*extra), env=self.env, cwd=REPO, stdout=fh,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        return proc, log

    def run_available_now(self) -> float:
        t0 = time.monotonic()
        proc, log = self.start("--available-now")
        try:
            rc = proc.wait(timeout=JOB_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError(f"job did not finish in {JOB_TIMEOUT}s; log: {log}") from None
        assert rc == 0, f"job failed (rc={rc}):\n{_tail(log)}"
        return time.monotonic() - t0

    def batches(self, log: str) -> set[int]:
        d = self.checkpoint / log
        return {int(p.name) for p in d.iterdir() if p.name.isdigit()} if d.exists() else set()

    def in_flight(self) -> int | None:
        """The batch Spark has planned (offset log) but not committed: it is being written now."""
        pending = self.batches("offsets") - self.batches("commits")
        return max(pending) if pending else None


def _tail(path: Path, n: int = 60) -> str:
    lines = path.read_text(errors="replace").splitlines()
    return "\n".join(ln for ln in lines[-400:] if " WARN " not in ln and not ln.startswith("\tat "))[-6000:] \
        if len(lines) > n else "\n".join(lines)


def presto_rows(presto_conn: Callable[..., Any], p: Pipeline) -> list[tuple[Any, ...]]:
    cur = presto_conn(schema=p.db).cursor()
    cur.execute(
        f'SELECT host, metric, CAST(window_start AS varchar), samples, avg_value, max_value, dt '
        f'FROM "{p.db}"."{p.table}" ORDER BY host, metric, window_start'
    )
    return [(h, m, ws[:19], n, a, mx, d) for h, m, ws, n, a, mx, d in cur.fetchall()]


def expected_rows(events: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (r["host"], r["metric"], r["window_start"], r["samples"], r["avg_value"], r["max_value"], r["dt"])
        for r in pe.expected_aggregates(events)
    ]


def assert_exact(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]]) -> None:
    keys = [r[:3] for r in got]
    assert len(keys) == len(set(keys)), "duplicate (host, metric, window_start) rows"
    assert len(got) == len(want), f"{len(got)} rows, expected {len(want)}"
    for g, w in zip(got, want, strict=True):
        # avg_value is a double: the order of additions differs between Spark and Python.
        assert (g[:4], g[5:]) == (w[:4], w[5:]), f"{g} != {w}"
        assert math.isclose(g[4], w[4], rel_tol=1e-12), f"avg {g} != {w}"


@pytest.fixture
def pipeline(
    stack: dict[str, Any], spark_env: dict[str, str], hive_conn: Callable[..., Any], tmp_path: Path, unique_name: str
) -> Iterator[Pipeline]:
    p = Pipeline(stack, spark_env, tmp_path, unique_name)
    p.create(hive_conn)
    yield p
    p.drop(hive_conn)


def test_available_now_is_exact_and_a_rerun_adds_nothing(
    pipeline: Pipeline, presto_conn: Callable[..., Any]
) -> None:
    p = pipeline
    first = p.produce((11, 3000, START, STEP_MS))  # 120 s of events across midnight
    seconds = p.run_available_now()
    want = expected_rows(first)
    assert {r[6] for r in want} == {"2026-03-01", "2026-03-02"}
    assert_exact(presto_rows(presto_conn, p), want)
    print(f"first run: {len(first)} events -> {len(want)} rows in {seconds:.1f}s (JVM start included)")

    # Same checkpoint, no new data: nothing changes, nothing is duplicated.
    p.run_available_now()
    assert_exact(presto_rows(presto_conn, p), want)

    # Late events for minutes already written merge into them; events older than the
    # watermark (newest event seen - 2 minutes, the job's default) are dropped.
    late = p.produce((12, 500, START + dt.timedelta(seconds=20), 100.0))
    too_late = p.produce((13, 50, START - dt.timedelta(minutes=30), STEP_MS))
    p.run_available_now()
    got = presto_rows(presto_conn, p)
    assert_exact(got, expected_rows(first + late))
    assert not any(r[2] < START.strftime("%Y-%m-%d %H:%M") for r in got), "too-late events were written"
    assert len(too_late) == 50

    # The sink kept a commit marker per batch and at most keep_versions directories per dt.
    markers = sorted(int(f.stem) for f in p.table_dir.glob(f"_pipectl_sink/{p.query}-*/*.json"))
    assert markers == [0, 1]
    for part in p.table_dir.glob("dt=*"):
        assert 1 <= len(list(part.glob("_v=*"))) <= 3


def test_kill_9_mid_batch_then_restart_gives_identical_rows(
    pipeline: Pipeline, presto_conn: Callable[..., Any]
) -> None:
    p = pipeline
    # Two interleaved sets, one each side of midnight: every batch touches both dt partitions.
    midnight = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    events = p.produce(
        (21, 6000, midnight - dt.timedelta(seconds=60), 10.0), (22, 6000, midnight, 10.0), rate=3000
    )
    want = expected_rows(events)

    # Small batches, so the kill lands in a batch that merges into partitions written before.
    proc, log = p.start("--max-offsets-per-trigger", "2000")
    readings = 0
    killed_in: int | None = None
    next_read = 0.0
    try:
        deadline = time.monotonic() + JOB_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            batch = p.in_flight()
            if batch is not None and batch >= 2:
                # One partition of the batch is written (its _SUCCESS exists) and being swapped in,
                # the other one is not done yet: kill -9 now.
                if list(p.table_dir.glob(f"dt=*/_v={batch}-{p.query}-*/_SUCCESS")):
                    os.killpg(proc.pid, signal.SIGKILL)
                    killed_in = batch
                    break
            if time.monotonic() >= next_read:
                # Concurrent readers: never an error, never a duplicate key.
                rows = presto_rows(presto_conn, p)
                keys = [r[:3] for r in rows]
                assert len(keys) == len(set(keys)), "a reader saw duplicate keys"
                readings += 1
                next_read = time.monotonic() + 1.0
            time.sleep(0.02)
    finally:
        if proc.poll() is None and killed_in is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert killed_in is not None, f"no batch was caught in flight:\n{_tail(log)}"
    assert proc.returncode == -signal.SIGKILL
    assert killed_in not in p.batches("commits")
    assert not list(p.table_dir.glob(f"_pipectl_sink/{p.query}-*/{killed_in}.json"))
    written = sorted(d.parent.parent.name for d in p.table_dir.glob(f"dt=*/_v={killed_in}-{p.query}-*/_SUCCESS"))
    print(f"kill -9 in batch {killed_in} after {readings} Presto readings; partitions written: {written}")

    partial = presto_rows(presto_conn, p)
    assert len({r[:3] for r in partial}) == len(partial)

    p.run_available_now()  # restart on the same checkpoint: replays batch killed_in, then the rest
    assert killed_in in p.batches("commits")
    assert_exact(presto_rows(presto_conn, p), want)
    replay = [ln for ln in (p.tmp / f"job-{p.runs}.log").read_text().splitlines() if f"batch {killed_in}:" in ln]
    print("replay:", replay[0].split("host_metrics_agg: ", 1)[-1] if replay else "?")
