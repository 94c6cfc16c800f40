"""test_key_subset_canary (issue #15, item 2): a key-subset canary under a running controller.

A real ``pipectl controller run`` drives a release at one stage, ``dev``, whose Spark job
(``jobs/keyed_agg.py``, written below: the example job's decoding, 10-second windows per host, and
a ``src`` column holding the job's ``--version``, so every row says which version wrote it) is
``strategy: canary`` with ``keys: {columns: [host], steps: [10, 50, 100], pause: 20s}``. The example
producer writes events of 40 hosts for the whole test. Once 1.0.0 serves, a query loop (2.5 Hz, pyhive →
Presto) reads the serving view while 1.1.0 is committed: the new job starts beside the stable one,
soaks and catches up, and the controller moves the view through 10 → 50 → 100 %, each step held 20 s
once it serves, running the gate at each pass, then promotes.
The loop goes on over the promoted view until the jobs have closed 3 windows after the cutover, so
the missing-key check below has judged the canary's side of the view (the steps alone can be
shorter than that).

Asserted over every result of the loop (``cutover`` is the canary side's first minute, read from
the view at the end):

- no query failed, the loop ran at ≥ 2 Hz;
- no (host, window) appears twice in a result;
- no (host, window) is missing: every window closed by every running job of the release (its end
  plus one window at most the jobs' minimum watermark, read right before the query) holds exactly
  the hosts the stable version's table holds for it at the end, with the same ``samples``;
- the partition is exact: from the cutover on, each host is served by one version only;
- the canary's share: in each result that holds all 40 hosts from the cutover on, the number served
  by 1.1.0 is within one key of p % of 40 for a declared step p (or 0 before the first step), the
  steps seen never go back, and each of 10, 50 and 100 % is seen by at least 3 queries.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
    stage_is,
    stage_status,
    stop_spark_jobs,
    topic_config,
    wait_for,
)

pytestmark = pytest.mark.integration

BOOTSTRAP = "127.0.0.1:9092"
HOSTS, RATE = 40, 40  # events/s: each host about once a second
STEPS = [10, 50, 100]
# Each step is held this long once it serves: the stable job writes a window up to a trigger after
# the canary does, and only a result holding every host from the cutover on judges the share (CI at
# c5bee57 saw the 10 % step for 5 s, none of it with the stable side's first window: 0 queries)
PAUSE = "20s"
WINDOW = timedelta(seconds=10)
QUERY_PERIOD = 0.4  # s between query starts (2.5 Hz)

KEYED_AGG = '''\
"""The example job's decoding, aggregated per (host, 10-second window), each row tagged with the
version that wrote it (``src``): test_key_subset_canary tells the versions apart by it."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from host_metrics_agg import DEFAULT_SCHEMA, decode_events  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from controller.jobkit import MergeSpec  # noqa: E402
from controller.jobkit.kafka_job import AggregationJob, base_parser, check_args, run_aggregation  # noqa: E402


def decode(raw, schema_json, args):
    return decode_events(raw, schema_json).withColumn("src", F.lit(args.version))


def aggregate(events, watermark_ms):
    if watermark_ms:
        events = events.where(F.col("event_time") >= F.expr(f"timestamp_millis({int(watermark_ms)})"))
    return (
        events.groupBy("host", "src", F.window("event_time", "10 seconds").start.alias("window_start"))
        .agg(F.count(F.lit(1)).cast("bigint").alias("samples"))
        .withColumn("dt", F.date_format("window_start", "yyyy-MM-dd"))
    )


JOB = AggregationJob(
    "keyed_agg", decode, aggregate, MergeSpec(keys=("host", "src", "window_start"), count="samples"),
    "`host` STRING, `src` STRING, `window_start` TIMESTAMP, `samples` BIGINT",
)

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(run_aggregation(JOB, check_args(base_parser("keyed_agg", "keyed", DEFAULT_SCHEMA).parse_args())))
'''


def release_yaml(name: str, version: str) -> str:
    doc = {
        "apiVersion": "pipectl.dev/v1alpha1",
        "kind": "PipelineRelease",
        "metadata": {"name": name},
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
                    "name": "tel.events",
                    "partitions": 1,
                    "replicationFactor": 1,
                    "config": {"retention.ms": "86400000"},
                    "valueSchema": "host-metric-event",
                }
            ],
            "tables": [
                {
                    "name": "tel.m_10s",
                    "columns": [
                        {"name": "host", "type": "string"},
                        {"name": "src", "type": "string"},
                        {"name": "window_start", "type": "timestamp"},
                        {"name": "samples", "type": "bigint"},
                    ],
                    "partitionedBy": [{"name": "dt", "type": "string"}],
                    "format": "parquet",
                }
            ],
            "views": [{"name": "tel.m", "table": "tel.m_10s"}],
            "streamingJobs": [
                {
                    "name": "agg",
                    "entrypoint": "jobs/keyed_agg.py",
                    "sources": [{"topic": "tel.events", "startingOffsets": "earliest"}],
                    "sinks": [{"table": "tel.m_10s"}],
                    "trigger": "10s",
                    "strategy": "canary",
                    "keys": {"columns": ["host"], "steps": STEPS, "pause": PAUSE},
                    "replayWindow": "30s",
                    "args": ["--watermark", "10s"],
                    "conf": {"spark.sql.shuffle.partitions": "1"},
                }
            ],
            "rollout": {
                "stages": ["dev"],
                "gates": [{"name": "keeps-up", "type": "streamingHealth", "maxLagSeconds": 120}],
            },
        },
    }
    return yaml.safe_dump(doc, sort_keys=False)


@dataclass
class Result:
    started: float
    finished: float
    watermark: datetime | None  # min watermark of the release's alive jobs, read right before the query
    rows: list[tuple[Any, ...]] | None = None
    error: str | None = None


@dataclass
class QueryLoop:
    """Starts a query every ``QUERY_PERIOD`` seconds on a pool (slow answers do not slow the rate)."""

    sql: str
    watermark: Callable[[], datetime | None]
    results: list[Result] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def _one(self) -> None:
        from pyhive import presto

        wm = self.watermark()
        t0 = time.time()
        try:
            cur = presto.connect(
                host="127.0.0.1", port=8080, catalog="hive", schema="default", username="it-key-canary"
            ).cursor()
            cur.execute(self.sql)
            self.results.append(Result(t0, time.time(), wm, rows=[tuple(r) for r in cur.fetchall()]))
        except Exception as e:  # every failure is a finding: recorded, asserted on later
            self.results.append(Result(t0, time.time(), wm, error=f"{type(e).__name__}: {e}"))

    def run(self) -> None:
        # Presto answers in seconds on a loaded machine: enough workers that queries start on time
        pool = ThreadPoolExecutor(max_workers=24, thread_name_prefix="ks-query")
        nxt = time.monotonic()
        while not self.stop.is_set():
            pool.submit(self._one)
            nxt += QUERY_PERIOD
            self.stop.wait(max(0.0, nxt - time.monotonic()))
        pool.shutdown(wait=True, cancel_futures=True)  # queries not started by the stop are not run


def min_watermark(runner: Any, release: str) -> datetime | None:
    wms = []
    for name, st in runner.list().items():
        if release in name and st.alive and st.progress:
            wm = (st.progress.get("eventTime") or {}).get("watermark")
            t = datetime.fromisoformat(wm.replace("Z", "+00:00")) if wm else None
            if t is None or t.year <= 1970:
                return None  # a job without a watermark yet closes nothing
            wms.append(t)
    return min(wms) if wms else None


def view_cutover(view: str) -> datetime:
    """The canary side's first window, read from the serving view's text (one cutover only)."""
    from pyhive import presto

    cur = presto.connect(
        host="127.0.0.1", port=8080, catalog="hive", schema="default", username="it-key-canary"
    ).cursor()
    cur.execute(f"SHOW CREATE VIEW {view}")
    view_sql = cur.fetchall()[0][0]
    cutovers = set(re.findall(r"TIMESTAMP '(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", view_sql))
    assert len(cutovers) == 1, view_sql
    return ts(cutovers.pop())


def ts(text: str) -> datetime:
    return datetime.strptime(text[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


@dataclass
class Ks:
    uid: str
    name: str
    repo: Path
    state: Path
    ctl: Ctl
    producer: subprocess.Popen[bytes] | None = None

    @property
    def topic(self) -> str:
        return f"it{self.uid}.tel.events"

    def table(self, name: str) -> str:
        return f'hive."it{self.uid}_tel"."{name}"'


@pytest.fixture
def ks(tmp_path: Path, stack: dict[str, Any], spark_env: dict[str, str], unique_name: str) -> Iterator[Ks]:
    uid = unique_name
    name = f"ks-{uid}"
    files = {
        "environments/dev.yaml": stage_env_yaml(
            "dev", f"it{uid}.", f"it{uid}_", stack["airflow_dags_folder"]
        ),
        "releases/keyed.yaml": release_yaml(name, "1.0.0"),
        "jobs/keyed_agg.py": KEYED_AGG,
    }
    for rel in ("jobs/host_metrics_agg.py", "schemas/host_metric_event.avsc", "tools/produce_events.py"):
        files[rel] = (ROOT / "manifests" / rel).read_text()
    repo = init_repo(tmp_path, files, "keyed 1.0.0")
    state = tmp_path / "state" / "state.db"
    k = Ks(uid, name, repo, state, Ctl(repo, state, free_port(), tmp_path / "controller.log", bake="60s"))
    try:
        yield k
    finally:
        if k.producer and k.producer.poll() is None:
            os.killpg(k.producer.pid, signal.SIGTERM)
            k.producer.wait(timeout=30)
        k.ctl.stop()
        print(f"cleanup: stopped streaming jobs {stop_spark_jobs(state.parent, repo, spark_env)}")
        drop_everything(uid, [f"it{uid}_tel"], stack["airflow_dags_folder"], None)
        shutil.rmtree(state.parent / "checkpoints", ignore_errors=True)


def start_producer(ks: Ks, log: Path) -> subprocess.Popen[bytes]:
    args = ["--bootstrap-servers", BOOTSTRAP, "--topic", ks.topic, "--rate", str(RATE), "--duration", "900"]
    args += ["--seed", "5", "--hosts", str(HOSTS), "--metrics", "1"]
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, str(ks.repo / "tools" / "produce_events.py"), *args],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def expected_share(canary: int) -> int | None:
    """The step (0 before the first) whose p % of HOSTS is within one key of ``canary``."""
    for p in [0, *STEPS]:
        if abs(canary - p * HOSTS / 100) <= 1:
            return p
    return None


def check(
    results: list[Result], cutover: datetime, truth: dict[tuple[str, datetime], int]
) -> tuple[list[str], list[int]]:
    """Problems found in the loop's results, and the step each share-checked result showed."""
    problems: list[str] = []
    steps: list[int] = []
    t0 = results[0].started
    for r in results:
        at = f"{r.started - t0:.1f}s"
        assert r.rows is not None
        seen: Counter[tuple[str, datetime]] = Counter()
        served: dict[str, set[str]] = {}
        samples: dict[tuple[str, datetime], int] = {}
        for host, src, window, n in r.rows:
            k = (host, ts(window))
            seen[k] += 1
            samples[k] = int(n)
            if k[1] >= cutover:
                served.setdefault(host, set()).add(src)
        dup = [k for k, c in seen.items() if c > 1]
        if dup:
            problems.append(f"{at}: (host, window) served twice: {dup[:3]}")
        both = [h for h, s in served.items() if len(s) > 1]
        if both:
            problems.append(f"{at}: hosts served by both versions from the cutover on: {both[:3]}")
        if r.watermark is not None:
            for (host, w), n in truth.items():
                if w + 2 * WINDOW <= r.watermark and samples.get((host, w)) != n:
                    problems.append(f"{at}: {host} {w:%H:%M:%S}: {samples.get((host, w))} served, {n} stable")
        if len(served) == HOSTS:
            canary = sum(1 for s in served.values() if s == {"1.1.0"})
            p = expected_share(canary)
            if p is None:
                problems.append(
                    f"{at}: 1.1.0 serves {canary} of {HOSTS} hosts: no step's share within one key"
                )
            else:
                steps.append(p)
    return problems, steps


def test_key_subset_canary(ks: Ks, spark_env: dict[str, str], tmp_path: Path) -> None:
    from controller.adapters.spark import LocalRunner

    t_start = time.time()

    def phase(label: str) -> None:
        print(f"[{time.time() - t_start:6.1f}s] {label}", flush=True)

    ks.ctl.start()
    wait_for(lambda: topic_config(BOOTSTRAP, ks.topic) is not None, 120, "the stage topic", ks.ctl.log)
    ks.producer = start_producer(ks, tmp_path / "producer.log")
    wait_for(lambda: stage_is(ks.state, ks.name, "dev", "1.0.0", "Succeeded"), 480, "1.0.0", ks.ctl.log)
    phase("1.0.0 Succeeded")

    runner = LocalRunner(ks.state.parent / "spark", ks.repo, spark_env)
    view = ks.table("m")
    loop = QueryLoop(
        f"SELECT host, src, CAST(window_start AS varchar), samples FROM {view}",
        lambda: min_watermark(runner, ks.name),
    )
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    t_loop = time.time()
    try:
        commit_files(ks.repo, {"releases/keyed.yaml": release_yaml(ks.name, "1.1.0")}, "keyed 1.1.0")
        ks.ctl.webhook()

        said: list[str] = []

        def promoted() -> bool:
            st = stage_status(ks.state, ks.name, "dev")
            if st.get("message") and st.get("message") != (said or [""])[-1]:
                said.append(str(st["message"]))
                phase(f"{st.get('version')} {st.get('phase')}: {said[-1][:160]}")
            if st.get("version") == "1.1.0" and st.get("phase") in ("Failed", "RolledBack"):
                raise AssertionError(f"1.1.0 did not promote: {st}")
            return bool(st.get("version") == "1.1.0" and st.get("phase") == "Succeeded")

        wait_for(promoted, 900, "1.1.0 Succeeded", ks.ctl.log)
        phase("1.1.0 Succeeded (every key from 1.1.0)")
        # The steps can take less time than the jobs need to close 3 windows after the cutover:
        # the loop goes on over the promoted view until they are closed, so the missing-key check
        # has judged the canary's side (CI at e10d2b2 stopped with 2 closed).
        cutover = view_cutover(view)
        time.sleep(8)
        wait_for(
            lambda: (min_watermark(runner, ks.name) or cutover) >= cutover + (3 - 1 + 2) * WINDOW,
            180,
            "3 windows closed after the cutover",
            ks.ctl.log,
        )
        phase("3 windows closed after the cutover")
    finally:
        t_stop = time.time()
        loop.stop.set()
        thread.join(timeout=180)
    seconds = t_stop - t_loop

    from pyhive import presto

    cur = presto.connect(
        host="127.0.0.1", port=8080, catalog="hive", schema="default", username="it-key-canary"
    ).cursor()
    cur.execute(f"SHOW CREATE VIEW {view}")
    view_sql = cur.fetchall()[0][0]
    final_wm = min_watermark(runner, ks.name)
    assert final_wm is not None
    cur.execute(f"SELECT host, CAST(window_start AS varchar), samples FROM {ks.table('m_10s__v1_0_0')}")
    truth = {(h, ts(w)): int(n) for h, w, n in cur.fetchall() if ts(w) + 2 * WINDOW <= final_wm}
    print(f"cutover {cutover:%H:%M:%S}; view: {' '.join(view_sql.split())[:400]}")

    results = sorted(loop.results, key=lambda r: r.started)
    rate = sum(1 for r in results if r.started <= t_stop) / seconds
    failed = [r for r in results if r.error is not None]
    lat = sorted(r.finished - r.started for r in results)
    print(
        f"{len(results)} queries started in {seconds:.0f}s ({rate:.2f}/s), {len(failed)} failed, "
        f"latency p50 {lat[len(lat) // 2]:.2f}s max {lat[-1]:.2f}s"
    )
    assert not failed, "failed queries:\n" + "\n".join(
        f"{r.started - t_start:.1f}s {r.error}" for r in failed[:10]
    )
    assert all(r.rows for r in results), "a query returned no rows"
    problems, steps = check(results, cutover, truth)
    shares = Counter(steps)
    print(f"queries per step seen {dict(sorted(shares.items()))}")
    assert rate >= 2.0, f"the query loop ran at {rate:.2f} Hz"
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:30])
    assert steps == sorted(steps), f"the canary's share went back: {steps}"
    assert all(shares[p] >= 3 for p in STEPS), shares
    assert sum(1 for w in {w for _, w in truth} if w >= cutover) >= 3, (
        "too few closed windows after the cutover"
    )
    phase("done")
