"""Helpers of the streaming benchmarks (``bench_sink.py``, ``bench_latency.py``); not a benchmark.

- a fast Avro encoder for ``HostMetricEvent`` in the Confluent wire format (checked byte for byte
  against the ``avro`` library's encoding in ``manifests/tools/produce_events.py`` before use), so
  a producer in Python can feed the job hundreds of thousands of events per second;
- ``run_job``: the example job (``manifests/jobs/host_metrics_agg.py``) as its own
  ``spark-submit`` process with the stack's Spark configuration;
- readers of a query's checkpoint (rows per batch from the offset log, commit times).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import os
import random
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from controller.jobkit.wire import frame

ROOT = Path(__file__).resolve().parents[1]
JOB = ROOT / "manifests" / "jobs" / "host_metrics_agg.py"
SCHEMA = ROOT / "manifests" / "schemas" / "host_metric_event.avsc"
METRICS = ("cpu.user", "cpu.system", "mem.used", "disk.io", "net.rx", "net.tx", "load.1m", "gc.pause")


def producer_tool() -> ModuleType:
    path = ROOT / "manifests" / "tools" / "produce_events.py"
    spec = importlib.util.spec_from_file_location("produce_events", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("produce_events", mod)
    spec.loader.exec_module(mod)
    return mod


def _zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _string(s: str) -> bytes:
    b = s.encode("utf-8")
    return _zigzag(len(b)) + b


class FastEncoder:
    """Wire-format Avro of (host, metric, value, event_time ms), hosts/metrics pre-encoded; the
    schema id is the one the producer tool computes from the manifests' git history."""

    def __init__(self, schema_id: int | None = None) -> None:
        self.schema_id = producer_tool().repo_schema_id(SCHEMA) if schema_id is None else schema_id
        self._header = frame(self.schema_id, b"")  # the 5-byte header the body follows
        self._cache: dict[str, bytes] = {}
        self._double = struct.Struct("<d").pack

    def encode(self, host: str, metric: str, value: float, event_time_ms: int) -> bytes:
        h = self._cache.get(host) or self._cache.setdefault(host, _string(host))
        m = self._cache.get(metric) or self._cache.setdefault(metric, _string(metric))
        return self._header + h + m + self._double(value) + _zigzag(event_time_ms)

    def check(self) -> None:
        """Byte-for-byte equal to the avro library's encoding (the job decodes with that schema)."""
        pe = producer_tool()
        ref = pe.Encoder(SCHEMA, self.schema_id)
        for e in pe.generate_events(7, 200, 20, 8, 1_700_000_000_000, 37.0):
            assert self.encode(e.host, e.metric, e.value, e.event_time_ms) == ref.encode(e), e


Event = tuple[str, str, float, int]


def events(
    seed: int, count: int, start_ms: int, step_ms: float, hosts: int = 20, metrics: int = 4
) -> Iterator[Event]:
    rng = random.Random(seed)
    names = METRICS[:metrics]
    host_names = [f"host-{i:04d}" for i in range(hosts)]
    for i in range(count):
        yield (host_names[rng.randrange(hosts)], names[rng.randrange(len(names))],
               round(rng.uniform(0.0, 100.0), 3), start_ms + int(i * step_ms))


def produce_fast(bootstrap: str, topic: str, seed: int, count: int, start_ms: int, step_ms: float) -> float:
    """Send ``count`` events as fast as possible; returns events/s achieved."""
    from confluent_kafka import Producer

    enc = FastEncoder()
    p = Producer({
        "bootstrap.servers": bootstrap, "linger.ms": 50, "batch.num.messages": 10000,
        "compression.type": "lz4", "queue.buffering.max.messages": 500000, "acks": "1",
    })
    t0 = time.monotonic()
    for host, metric, value, ts in events(seed, count, start_ms, step_ms):
        value_bytes = enc.encode(host, metric, value, ts)
        while True:
            try:
                p.produce(topic, value=value_bytes, key=host.encode())
                break
            except BufferError:
                p.poll(0.05)
    remaining = p.flush(120)
    if remaining:
        raise RuntimeError(f"{remaining} events not delivered")
    return count / (time.monotonic() - t0)


def produce_sentinels(bootstrap: str, topic: str, at_ms: int, hosts: int = 20) -> None:
    """One event per host at ``at_ms`` (on every partition the hosts' keys reach): it moves the
    watermark of an ``--emit final`` job past every window before it, so they are all written.
    Its own window stays open and is never written."""
    from confluent_kafka import Producer

    enc = FastEncoder()
    p = Producer({"bootstrap.servers": bootstrap, "acks": "1"})
    for i in range(hosts):
        host = f"host-{i:04d}"
        p.produce(topic, value=enc.encode(host, METRICS[0], 0.0, at_ms), key=host.encode())
    if p.flush(60):
        raise RuntimeError("sentinel events not delivered")


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=partitions, replication_factor=1)
    for fut in admin.create_topics([new]).values():
        fut.result(timeout=30)


def delete_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.delete_topics([topic]).values():
        try:
            fut.result(timeout=30)
        except Exception as e:  # best-effort cleanup
            print(f"cleanup: topic {topic}: {e}", file=sys.stderr)


def spark_env() -> dict[str, str]:
    from controller.devstack.info import spark_env as stack_spark_env

    env = dict(os.environ)
    env.update(stack_spark_env(ROOT))
    env["PATH"] = f"{env['JAVA_HOME']}/bin{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def job_argv(
    *, master: str, bootstrap: str, topic: str, table: str, checkpoint: Path, query: str,
    extra: Sequence[str] = (), shuffle_partitions: int = 4, driver_memory: str = "1g",
) -> list[str]:
    env = spark_env()
    return [
        str(Path(env["SPARK_HOME"]) / "bin" / "spark-submit"),
        "--master", master, "--driver-memory", driver_memory,
        "--conf", f"spark.sql.shuffle.partitions={shuffle_partitions}",
        "--conf", "spark.ui.enabled=false",
        str(JOB),
        "--bootstrap-servers", bootstrap, "--topic", topic, "--table", table,
        "--checkpoint", str(checkpoint), "--starting-offsets", "earliest",
        "--query-name", query, "--version", "bench", "--create-table", *extra,
    ]


def start_job(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as fh:
        return subprocess.Popen(argv, env=spark_env(), cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


_TICK = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of the live processes of a process group (the job: JVM + driver)."""
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            text = (d / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:  # field 5: pgrp
            total += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    return total / _TICK


class CpuSampler(threading.Thread):
    """Samples a process group's CPU seconds twice a second: (wall time, cpu seconds)."""

    def __init__(self, pgid: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pgid, self.interval = pgid, interval
        self.samples: list[tuple[float, float]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.samples.append((time.time(), group_cpu_seconds(self.pgid)))
            self.done.wait(self.interval)

    def at(self, t: float) -> float:
        """CPU seconds at wall time ``t`` (linear between samples)."""
        pts = self.samples
        if not pts:
            return math.nan
        for (t0, c0), (t1, c1) in itertools.pairwise(pts):
            if t0 <= t <= t1:
                return c0 + (c1 - c0) * ((t - t0) / (t1 - t0) if t1 > t0 else 0.0)
        return pts[0][1] if t < pts[0][0] else pts[-1][1]


def batch_rows(checkpoint: Path) -> dict[int, int]:
    """Input rows of each planned batch, from the offset log (``offsets/<n>``: line 3 = source offsets)."""
    out: dict[int, int] = {}
    prev = 0
    for n in sorted(int(p.name) for p in (checkpoint / "offsets").iterdir() if p.name.isdigit()):
        lines = (checkpoint / "offsets" / str(n)).read_text().splitlines()
        total = sum(int(o) for topic in json.loads(lines[2]).values() for o in topic.values())
        out[n] = total - prev
        prev = total
    return out


def commit_times(checkpoint: Path) -> dict[int, float]:
    """When each batch committed (mtime of ``commits/<n>``)."""
    d = checkpoint / "commits"
    return {int(p.name): p.stat().st_mtime for p in d.iterdir() if p.name.isdigit()} if d.exists() else {}


def sink_seconds(log: Path) -> dict[int, float]:
    """Seconds of each batch's foreachBatch (aggregate + sink), from the job's own log line."""
    out: dict[int, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        if "host_metrics_agg: batch " in line and " sink, partitions " in line:
            head = line.split("host_metrics_agg: batch ", 1)[1]
            n = int(head.split(":", 1)[0])
            secs = head.split("], ", 1)[1].split("s ", 1)[0] if "], " in head else "nan"
            try:
                out[n] = float(secs)
            except ValueError:
                pass
    return out


def hive(sql: str, info: dict[str, Any]) -> None:
    from pyhive import hive as pyhive

    conn = pyhive.connect(host=info["thrift_host"], port=int(info["thrift_port"]), auth="NOSASL")
    try:
        conn.cursor().execute(sql)
    finally:
        conn.close()


def presto(sql: str, info: dict[str, Any]) -> list[tuple[Any, ...]]:
    from pyhive import presto as pypresto

    conn = pypresto.connect(host=info["presto_host"], port=int(info["presto_port"]), catalog="hive",
                            username="pipectl-bench")
    try:
        cur = conn.cursor()
        cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()
