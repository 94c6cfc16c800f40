"""zero_downtime: dashboards keep working through a streaming blue/green switch.

A real ``pipectl controller run`` drives the example release (its blueGreen Spark job
``jobs/host_metrics_agg.py``, copied with its schema into a throwaway git repo under a unique
name and prefixes) at one stage, ``dev``. The example producer writes telemetry into the stage
topic for the whole test. Once 1.0.0 serves, a query loop (≥ 2 Hz, pyhive → Presto) reads the
serving view ``it<uid>_telemetry.host_metrics`` while 1.1.0 is committed: green starts beside
blue from offsets before blue's position, soaks, catches up with blue's watermark, passes its
gate, the view is switched to the time-stitched union of both versions' tables, and after the bake blue stops.

Asserted over every result of the loop:

- no query failed (and every one returned rows);
- no (window_start, host, metric) bucket appears twice;
- the minutes seen form a contiguous range starting at the topic's first minute (history stays);
- every closed minute (window end at least a minute older than the serving jobs' watermark, as
  the jobs report it right before the query) holds every (host, metric) key the producer sent
  for it, with exactly the number of events Kafka holds for it (the test reads the topic back
  at the end): nothing missing, nothing counted twice, on either side of the cutover minute.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
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
    token_for,
    topic_config,
    wait_for,
)

BOOTSTRAP = "127.0.0.1:9092"
RATE = 30  # events/s
SEED = 11
HOSTS, METRICS = 20, 4
QUERY_PERIOD = 0.4  # s between query starts (2.5 Hz)
BAKE = "45s"
# the jobs' allowed lateness (kafka_job's --watermark; 2 minutes by default): the producer writes
# events as they happen, so one minute loses none, and green's start position (blue's watermark
# minus the replay window) lies inside the topic a minute sooner
WATERMARK = "1 minute"
MIN_DATA_AGE = 180  # s of events in the topic before 1.1.0 is committed

Key = tuple[str, str, str]  # (window_start 'YYYY-MM-DD HH:MM:SS', host, metric)


def release_yaml(name: str, version: str, shuffle_partitions: str) -> str:
    """The example release (manifests/releases/host-metrics.yaml) at one stage, quick gates only."""
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
                    "name": "telemetry.host_metrics",
                    "partitions": 2,
                    "replicationFactor": 1,
                    "config": {"retention.ms": "86400000", "cleanup.policy": "delete"},
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
                    "entrypoint": "jobs/host_metrics_agg.py",
                    # blue reads the topic from its start, so the test can count every event it served
                    "sources": [{"topic": "telemetry.host_metrics", "startingOffsets": "earliest"}],
                    "sinks": [{"table": "telemetry.host_metrics_1m"}],
                    "args": ["--watermark", WATERMARK],
                    "trigger": "10s",
                    "strategy": "blueGreen",
                    # green starts 1 minute behind blue's watermark: the cutover minute then falls inside
                    # the few minutes of data this test has (with 5m it would precede the first event)
                    "replayWindow": "1m",
                    "conf": {"spark.sql.shuffle.partitions": shuffle_partitions},
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
    watermark: datetime | None  # min watermark of the alive jobs, read right before the query
    rows: list[tuple[Any, ...]] | None = None
    error: str | None = None


@dataclass
class QueryLoop:
    """Starts a query every ``QUERY_PERIOD`` seconds on a pool (slow answers do not slow the rate)."""

    sql: str
    watermark: Any
    results: list[Result] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def _one(self) -> None:
        from pyhive import presto

        wm = self.watermark()
        t0 = time.time()
        try:
            cur = presto.connect(
                host="127.0.0.1", port=8080, catalog="hive", schema="default", username="it-zero-downtime"
            ).cursor()
            cur.execute(self.sql)
            rows = [tuple(r) for r in cur.fetchall()]
            self.results.append(Result(t0, time.time(), wm, rows=rows))
        except Exception as e:  # every failure is a finding: recorded, asserted on later
            self.results.append(Result(t0, time.time(), wm, error=f"{type(e).__name__}: {e}"))

    def run(self) -> None:
        with ThreadPoolExecutor(max_workers=6, thread_name_prefix="zd-query") as pool:
            nxt = time.monotonic()
            while not self.stop.is_set():
                pool.submit(self._one)
                nxt += QUERY_PERIOD
                self.stop.wait(max(0.0, nxt - time.monotonic()))

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self.run, name="zd-loop", daemon=True)
        t.start()
        return t


def job_watermarks(runner: Any, release: str) -> dict[str, datetime]:
    """Watermark of each alive streaming job of the release (jobs without one yet are left out)."""
    out = {}
    for name, st in runner.list().items():
        if release not in name or not st.alive or not st.progress:
            continue
        wm = (st.progress.get("eventTime") or {}).get("watermark")
        if wm:
            t = datetime.fromisoformat(wm.replace("Z", "+00:00"))
            if t.year > 1970:
                out[name] = t
    return out


def kafka_minutes(topic: str) -> dict[str, Counter[tuple[str, str]]]:
    """Every event in the topic, counted per UTC minute and (host, metric)."""
    import io

    import avro.io
    import avro.schema
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from controller.jobkit.wire import parse_header

    schema = avro.schema.parse((ROOT / "manifests" / "schemas" / "host_metric_event.avsc").read_text())
    reader = avro.io.DatumReader(schema)
    c = Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "group.id": f"it-zd-{os.getpid()}-{time.time()}",
            "enable.auto.commit": False,
        }
    )
    try:
        parts = list(c.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        done = {p: ends[p] == 0 for p in parts}
        out: dict[str, Counter[tuple[str, str]]] = {}
        deadline = time.time() + 120
        while not all(done.values()):
            assert time.time() < deadline, "reading the topic back took over 120s"
            msg = c.poll(1.0)
            if msg is None or msg.error():
                continue
            p, offset = int(msg.partition() or 0), int(msg.offset() or 0)
            if offset >= ends[p]:
                done[p] = True
                continue
            # the producer writes the Confluent wire format: the body follows the 5-byte header
            e: Any = reader.read(avro.io.BinaryDecoder(io.BytesIO(parse_header(msg.value())[1])))
            t = e["event_time"]
            t = t if isinstance(t, datetime) else datetime.fromtimestamp(t / 1000, tz=UTC)
            minute = t.astimezone(UTC).replace(second=0, microsecond=0).strftime("%Y-%m-%d %H:%M:%S")
            out.setdefault(minute, Counter())[(e["host"], e["metric"])] += 1
            if offset + 1 >= ends[p]:
                done[p] = True
        return out
    finally:
        c.close()


def end_offsets(topic: str) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"it-zd-ends-{os.getpid()}"})
    try:
        parts = list(c.list_topics(topic, timeout=10).topics[topic].partitions)
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    finally:
        c.close()


def kv(state: Path, key: str) -> str | None:
    con = sqlite3.connect(state)
    try:
        row = con.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
    finally:
        con.close()
    return row[0] if row else None


def minute_of(text: str) -> datetime:
    return datetime.strptime(text[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def fmt(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Zd:
    uid: str
    name: str
    repo: Path
    state: Path
    ctl: Ctl
    producer: subprocess.Popen[bytes] | None = None

    @property
    def topic(self) -> str:
        return f"it{self.uid}.telemetry.host_metrics"

    @property
    def view(self) -> str:
        return f'hive."it{self.uid}_telemetry"."host_metrics"'


@pytest.fixture
def zd(tmp_path: Path, stack: dict[str, Any], spark_env: dict[str, str], unique_name: str) -> Iterator[Zd]:
    uid = unique_name
    name = f"hm-{uid}"
    files = {
        "environments/dev.yaml": stage_env_yaml(
            "dev", f"it{uid}.", f"it{uid}_", stack["airflow_dags_folder"], metastore_uri=stack["metastore_uri"]
        ),
        "releases/host-metrics.yaml": release_yaml(name, "1.0.0", "2"),
    }
    for rel in ("jobs/host_metrics_agg.py", "schemas/host_metric_event.avsc", "tools/produce_events.py"):
        files[rel] = (ROOT / "manifests" / rel).read_text()
    repo = init_repo(tmp_path, files, "host-metrics 1.0.0")
    state = tmp_path / "state" / "state.db"
    z = Zd(uid, name, repo, state, Ctl(repo, state, free_port(), tmp_path / "controller.log", bake=BAKE))
    try:
        yield z
    finally:
        if z.producer and z.producer.poll() is None:
            os.killpg(z.producer.pid, signal.SIGTERM)
            z.producer.wait(timeout=30)
        z.ctl.stop()
        stopped = stop_spark_jobs(state.parent, repo, spark_env)
        print(f"cleanup: stopped streaming jobs {stopped}")
        drop_everything(uid, [f"it{uid}_telemetry"], stack["airflow_dags_folder"], None)
        shutil.rmtree(state.parent / "checkpoints", ignore_errors=True)


def alert_metric_names() -> set[str]:
    """Every pipectl_* metric an alert rule or a recording rule it uses reads (suffixes folded)."""
    doc = yaml.safe_load((ROOT / "manifests" / "platform" / "monitoring" / "pipectl-alerts.yaml").read_text())
    exprs = " ".join(str(r["expr"]) for g in doc["groups"] for r in g["rules"])
    return {re.sub(r"_(total|bucket|count|sum)$", "", m) for m in re.findall(r"\bpipectl_[a-z0-9_]+", exprs)}


def wait_for_alert_metrics(zd: Zd) -> dict[str, list[str]]:
    """GET /metrics of the running controller until every metric the alerts use has a sample (the
    streaming job's lag and freshness need a pass after its first batch); the samples by name."""
    need = alert_metric_names()
    assert {"pipectl_event_freshness_seconds", "pipectl_streaming_lag_seconds", "pipectl_drift_resources"} <= need
    seen: dict[str, list[str]] = {}

    token = token_for(zd.state, "it-prometheus")  # /metrics needs a principal, as Prometheus would be

    def complete() -> bool:
        req = urllib.request.Request(
            f"http://127.0.0.1:{zd.ctl.port}/metrics", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read().decode()
        seen.clear()
        for line in text.splitlines():
            if line.startswith("pipectl_"):
                metric = re.sub(r"_(total|bucket|count|sum|created)$", "", line.split("{")[0].split(" ")[0])
                seen.setdefault(metric, []).append(line)
        return need <= set(seen)

    try:
        wait_for(complete, 180, "samples of every alerted metric", zd.ctl.log)
    except AssertionError as e:
        raise AssertionError(f"no samples for {sorted(need - set(seen))}") from e
    job = [s for s in seen["pipectl_streaming_lag_seconds"] if f'release="{zd.name}"' in s]
    assert job, seen["pipectl_streaming_lag_seconds"]
    assert any(f'release="{zd.name}"' in s for s in seen["pipectl_event_freshness_seconds"])
    assert any('backend="state"' in s and s.endswith(" 1.0") for s in seen["pipectl_backend_up"])
    return seen


def test_zero_downtime_blue_green_switch(zd: Zd, spark_env: dict[str, str], tmp_path: Path) -> None:
    from controller.adapters.spark import LocalRunner

    t_start = time.time()
    phases: dict[str, float] = {}

    def phase(label: str) -> None:
        phases[label] = time.time() - t_start
        print(f"[{phases[label]:6.1f}s] {label}", flush=True)

    zd.ctl.start()
    wait_for(lambda: topic_config(BOOTSTRAP, zd.topic) is not None, 120, "the stage topic", zd.ctl.log)
    with (tmp_path / "producer.log").open("ab") as out:
        zd.producer = subprocess.Popen(
            [
                sys.executable,
                str(zd.repo / "tools" / "produce_events.py"),
                "--bootstrap-servers",
                BOOTSTRAP,
                "--topic",
                zd.topic,
                "--rate",
                str(RATE),
                "--duration",
                "1500",
                "--seed",
                str(SEED),
                "--hosts",
                str(HOSTS),
                "--metrics",
                str(METRICS),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    t_producer = time.time()
    phase("topic created; producer started")

    wait_for(
        lambda: stage_is(zd.state, zd.name, "dev", "1.0.0", "Succeeded"), 420, "1.0.0 Succeeded", zd.ctl.log
    )
    phase("1.0.0 (blue) Succeeded")
    samples = wait_for_alert_metrics(zd)
    phase(f"/metrics has samples of every metric the alert rules use ({len(samples)} series)")

    runner = LocalRunner(zd.state.parent / "spark", zd.repo, spark_env)
    sql = (
        f"SELECT CAST(window_start AS varchar), host, metric, count(*), sum(samples) "
        f"FROM {zd.view} GROUP BY 1, 2, 3"
    )

    def min_watermark() -> datetime | None:
        wms = job_watermarks(runner, zd.name)
        return min(wms.values()) if wms else None

    loop = QueryLoop(sql, min_watermark)
    loop_thread = loop.start()
    loop_started = time.time()
    try:
        # at least 30 s of queries against blue alone, and enough data that green's start position
        # (blue's watermark, a minute behind, minus the 1 min replay window) lies inside the topic
        time.sleep(max(30.0, t_producer + MIN_DATA_AGE - time.time()))
        phase("query loop running against blue")

        commit_files(
            zd.repo,
            {"releases/host-metrics.yaml": release_yaml(zd.name, "1.1.0", "3")},
            "host-metrics 1.1.0: shuffle partitions",
        )
        ends_at_commit = end_offsets(zd.topic)
        zd.ctl.webhook()
        t_commit = time.time()

        def green_started() -> bool:
            return any(n.endswith("-v1-1-0") and s.alive for n, s in runner.list().items())

        wait_for(green_started, 180, "the green job", zd.ctl.log)
        phase("1.1.0 (green) job started beside blue")
        # green starts inside the data, before blue's position (blue's watermark minus the replay window)
        rollout_doc = json.loads(kv(zd.state, f"rollout/{zd.name}/dev") or "{}")
        green_start = rollout_doc.get("start_offsets", {}).get(f"dev-{zd.name}-host-metrics-agg-v1-1-0", {})
        offsets = json.loads(green_start["offsets"])[zd.topic]
        assert all(0 < int(o) < ends_at_commit[int(p)] for p, o in offsets.items()), (offsets, ends_at_commit)
        print(
            f"green starts at {offsets} (time {green_start['start_time']}); ends at the commit {ends_at_commit}"
        )

        def switched() -> bool:
            st = stage_status(zd.state, zd.name, "dev")
            if st.get("version") == "1.1.0" and st.get("phase") in ("Failed", "RolledBack"):
                raise AssertionError(f"1.1.0 did not promote: {st}")
            return bool(st.get("version") == "1.1.0" and st.get("phase") == "Succeeded")

        wait_for(switched, 420, "1.1.0 Succeeded (view switched)", zd.ctl.log)
        t_switch = time.time()
        phase(f"1.1.0 Succeeded, view switched ({t_switch - t_commit:.0f}s after the commit)")
        dev = stage_status(zd.state, zd.name, "dev")
        assert dev["previousVersion"] == "1.0.0", dev
        assert "serving view switched from 1.0.0" in dev["message"], dev

        from pyhive import presto

        cur = presto.connect(
            host="127.0.0.1", port=8080, catalog="hive", schema="default", username="it-zero-downtime"
        ).cursor()
        cur.execute(f"SHOW CREATE VIEW {zd.view}")
        view_sql = cur.fetchall()[0][0]
        assert "host_metrics_1m__v1_0_0" in view_sql and "host_metrics_1m__v1_1_0" in view_sql, view_sql
        cutovers = re.findall(r"TIMESTAMP '(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", view_sql)
        assert len(set(cutovers)) == 1, view_sql
        cutover = minute_of(cutovers[0])
        print(f"cutover minute {fmt(cutover)}; view: {' '.join(view_sql.split())}")

        time.sleep(30)
        phase("30 s of queries after the switch")

        def blue_stopped() -> bool:
            st = stage_status(zd.state, zd.name, "dev")
            blue = runner.list().get(f"dev-{zd.name}-host-metrics-agg-v1-0-0")
            return st.get("previousVersion") is None and (blue is None or not blue.alive)

        wait_for(blue_stopped, 45 + 120, "the bake to stop blue", zd.ctl.log)
        phase("bake over: blue stopped, previousVersion cleared")

        def green_closed_served() -> bool:
            # queries after the switch whose watermark closes the cutover minute (served by green)
            closing = cutover + timedelta(minutes=2)
            return (
                sum(
                    1
                    for r in list(loop.results)
                    if r.started > t_switch and r.watermark is not None and r.watermark >= closing
                )
                >= 30
            )

        wait_for(green_closed_served, 300, "30 queries closing green's first minute", zd.ctl.log)
        phase("green's minutes closed and served")
    finally:
        loop.stop.set()
        loop_thread.join(timeout=120)
    loop_seconds = time.time() - loop_started
    assert stage_is(zd.state, zd.name, "dev", "1.1.0", "Succeeded")
    assert f"dev-{zd.name}-host-metrics-agg-v1-1-0" in {n for n, s in runner.list().items() if s.alive}

    # --- the loop's results -------------------------------------------------------------------
    results = sorted(loop.results, key=lambda r: r.started)
    rate = len(results) / loop_seconds
    failed = [r for r in results if r.error is not None]
    lat = sorted(r.finished - r.started for r in results)
    print(
        f"{len(results)} queries in {loop_seconds:.0f}s ({rate:.2f}/s), {len(failed)} failed, "
        f"latency p50 {lat[len(lat) // 2]:.2f}s max {lat[-1]:.2f}s"
    )
    assert not failed, "failed queries:\n" + "\n".join(
        f"{r.started - t_start:.1f}s {r.error}" for r in failed[:10]
    )
    assert rate >= 2.0, f"query loop ran at {rate:.2f} Hz"
    assert sum(1 for r in results if r.started < t_commit) >= 30
    assert sum(1 for r in results if r.started > t_switch) >= 60

    expected = kafka_minutes(zd.topic)
    phase(f"read the topic back: {sum(sum(c.values()) for c in expected.values())} events")

    first = min(minute_of(k) for k in expected)
    problems: list[str] = []
    checked = checked_green = 0
    for r in results:
        assert r.rows, f"query at {r.started - t_start:.1f}s returned no rows"
        keys: Counter[Key] = Counter()
        got: dict[Key, int] = {}
        for ws, host, metric, n, samples in r.rows:
            k = (ws[:19], host, metric)
            keys[k] += int(n)
            got[k] = int(samples)
        dup = [k for k, n in keys.items() if n > 1]
        if dup:
            problems.append(f"{r.started - t_start:.1f}s: duplicated buckets {dup[:5]}")
        minutes = sorted(minute_of(ws) for ws in {k[0] for k in keys})
        if minutes[0] != first:  # the oldest history (blue's table) stays served
            problems.append(
                f"{r.started - t_start:.1f}s: first minute served {fmt(minutes[0])}, not {fmt(first)}"
            )
        span = int((minutes[-1] - minutes[0]).total_seconds() // 60) + 1
        if span != len(minutes):
            have = {fmt(m) for m in minutes}
            gaps = [
                fmt(minutes[0] + timedelta(minutes=i))
                for i in range(span)
                if fmt(minutes[0] + timedelta(minutes=i)) not in have
            ]
            problems.append(f"{r.started - t_start:.1f}s: minutes not contiguous, missing {gaps[:5]}")
        if r.watermark is None:
            continue
        m = minutes[0]
        while m + timedelta(minutes=2) <= r.watermark:
            want = expected.get(fmt(m), Counter())
            for (host, metric), n in want.items():
                have_n = got.get((fmt(m), host, metric))
                if have_n != n:
                    problems.append(
                        f"{r.started - t_start:.1f}s: minute {fmt(m)} {host}/{metric}: "
                        f"{have_n} samples served, {n} events in Kafka"
                    )
            extra = {(h, mt) for (ws, h, mt) in got if ws == fmt(m)} - set(want)
            if extra:
                problems.append(f"{r.started - t_start:.1f}s: minute {fmt(m)} serves keys never sent {extra}")
            checked += 1
            if r.started > t_switch and m >= cutover:
                checked_green += 1
            m += timedelta(minutes=1)
    print(
        f"checked {checked} closed (result, minute) pairs, {checked_green} served by green after the switch"
    )
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:30])
    assert checked_green >= 30, "too few closed minutes after the cutover were checked"
    # the first minute of data precedes the cutover: blue's history is served beside green's
    assert first < cutover, (fmt(first), fmt(cutover))
    phase("done")
    for label, t in phases.items():
        print(f"  {t:6.1f}s  {label}")
    assert time.time() - t_start < 15 * 60
