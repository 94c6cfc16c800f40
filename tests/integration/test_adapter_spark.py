"""Spark adapter against the real stack: spark-submit processes reading the stack's Kafka.

The jobs are small test jobs under tests/integration/jobs/ that honour pipectl's lifecycle
contract through ``controller.jobkit.lifecycle``. Plans come from the real diff rule; state is
checked through the job's own files (Spark's checkpoint ``offsets/`` and ``commits/``, the
job's batch log and parquet output) and /proc, not only through the adapter. Spark is kept
lean: one job at a time, local[1], 2 shuffle partitions, 512m driver.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from controller.adapters.spark import JobProgress, LocalRunner, SparkAdapter
from controller.model.errors import PermanentBackendError
from controller.model.reasons import Reason
from controller.plan.actions import Action, DiffContext, Op
from controller.plan.desired import digest
from controller.plan.resources import Owner, ResourceKind, StreamingJobResource
from controller.plan.rules.spark import diff_job

pytestmark = pytest.mark.integration

JOBS_ROOT = Path(__file__).resolve().parent  # entrypoints are relative to it: jobs/<file>.py
JOB = ResourceKind.STREAMING_JOB
START_TIMEOUT = 150.0  # JVM + first batch on a shared 2-core machine


# --- helpers ------------------------------------------------------------------------------------


def wait_for(what: str, fn: Callable[[], Any], timeout: float = START_TIMEOUT, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def batch_ids(checkpoint: Path, log: str) -> set[int]:
    d = checkpoint / log
    return {int(p.name) for p in d.iterdir() if p.name.isdigit()} if d.exists() else set()


def batch_log(out: Path) -> list[tuple[str, int, str]]:
    path = out / "_batches.log"
    if not path.exists():
        return []
    return [(w[0], int(w[1]), w[2]) for w in (ln.split() for ln in path.read_text().splitlines()) if len(w) == 3]


def in_flight(out: Path) -> int | None:
    """The batch the job is writing now (started, not done), if any."""
    started: dict[int, bool] = {}
    for ev, b, _ in batch_log(out):
        started[b] = ev == "done"
    open_ = [b for b, done in started.items() if not done]
    return max(open_) if open_ else None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def plan(adapter: SparkAdapter, desired: StreamingJobResource, ctx: DiffContext | None = None) -> list[Action]:
    live = adapter.observe(JOB, [desired.name]).get(desired.name)
    assert live is None or isinstance(live, StreamingJobResource)
    return diff_job(desired, live, ctx or DiffContext())


def observed(adapter: SparkAdapter, name: str) -> StreamingJobResource:
    live = adapter.observe(JOB, [name])[name]
    assert isinstance(live, StreamingJobResource)
    return live


def registry_entry(state_dir: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((state_dir / "jobs" / f"{name}.json").read_text())
    return data


def progress_at_least(adapter: SparkAdapter, name: str, batch: int, run_id: str | None = None) -> JobProgress | None:
    p = adapter.progress(name)
    if p is None or p.batch_id < batch or (run_id is not None and p.run_id == run_id):
        return None
    return p


@pytest.fixture
def safe_name(unique_name: str) -> Callable[[str], str]:
    return lambda prefix: re.sub(r"[^a-z0-9.-]", "-", f"{prefix}-{unique_name}".lower())


@pytest.fixture
def topic(kafka_bootstrap: str, safe_name: Callable[[str], str]) -> Iterator[str]:
    """A fresh 2-partition topic holding 2000 small records (20 per batch → ~100 batches)."""
    name = "it." + safe_name("spark")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])[name].result(30)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(2000):
        producer.produce(name, value=f"m{i}".encode(), partition=i % 2)
    assert producer.flush(30) == 0
    yield name
    admin.delete_topics([name])[name].result(30)


@pytest.fixture
def make_runner(spark_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[], LocalRunner]]:
    """Runner factory over one state dir (a second call is a controller restart); kills leftovers."""
    runners: list[LocalRunner] = []

    def make() -> LocalRunner:
        r = LocalRunner(tmp_path / "state", JOBS_ROOT, spark_env, master="local[1]", driver_memory="512m")
        runners.append(r)
        return r

    yield make
    if runners:
        for name, st in runners[-1].list().items():
            if st.alive:
                runners[-1].kill(name)


def kafka_job(name: str, topic: str, tmp: Path, version: str, **kw: Any) -> StreamingJobResource:
    entry = "jobs/kafka_to_parquet.py"
    ck = str(tmp / "ck" / name)
    args = [
        "--bootstrap-servers", kw.pop("bootstrap"), "--topic", kw.pop("topic_arg", topic),
        "--table", "it_db.unused", "--checkpoint", ck, "--trigger", "2s",
        "--starting-offsets", "earliest", "--query-name", name, "--version", version,
        "--output", str(tmp / "out" / name), "--max-offsets-per-trigger", "20", "--batch-seconds", "3",
    ]
    spec: dict[str, Any] = {
        "name": name, "owner": Owner(release="it-spark", version=version), "version": version,
        "entrypoint": entry, "entrypoint_digest": digest((JOBS_ROOT / entry).read_bytes()), "args": args,
        "conf": {"spark.sql.shuffle.partitions": "2"}, "checkpoint": ck,
    }
    spec.update(kw)
    return StreamingJobResource.model_validate(spec)


def rate_job(name: str, tmp: Path, version: str, **kw: Any) -> StreamingJobResource:
    entry = "jobs/rate_to_parquet.py"
    ck = str(kw.pop("ck_root", tmp / "ck") / name)
    if kw.get("strategy") in ("blueGreen", "canary"):
        ck += f"/v{version}"  # as plan.desired.checkpoint_dir does: one checkpoint per version
    args = [
        "--checkpoint", ck, "--output", str(tmp / "out" / name / version), "--query-name", name,
        "--version", version, "--trigger", "2s", "--rows-per-second", "5",
    ]
    spec: dict[str, Any] = {
        "name": name, "owner": Owner(release="it-spark", version=version), "version": version,
        "entrypoint": entry, "entrypoint_digest": digest((JOBS_ROOT / entry).read_bytes()), "args": args,
        "conf": {"spark.sql.shuffle.partitions": "2"}, "checkpoint": ck,
    }
    spec.update(kw)
    return StreamingJobResource.model_validate(spec)


# --- tests --------------------------------------------------------------------------------------


def test_kafka_job_lifecycle(
    make_runner: Callable[[], LocalRunner], kafka_bootstrap: str, topic: str,
    safe_name: Callable[[str], str], tmp_path: Path,
) -> None:
    name = safe_name("it-spark-kafka")
    state_dir = tmp_path / "state"
    adapter = SparkAdapter(make_runner(), stop_timeout=90)
    v1 = kafka_job(name, topic, tmp_path, "1.0.0", bootstrap=kafka_bootstrap)
    ck, out = Path(v1.checkpoint), tmp_path / "out" / name

    # observe → apply → observe: converged, with progress from the real query.
    [create] = plan(adapter, v1)
    assert create.op is Op.CREATE
    assert adapter.apply(create).changed
    p1 = wait_for("two committed batches", lambda: progress_at_least(adapter, name, 1))
    assert set(p1.end_offsets[topic]) == {0, 1} and sum(p1.end_offsets[topic].values()) >= 40
    assert p1.sources[0].latest_offsets[topic] == {0: 1000, 1: 1000}
    assert p1.input_rows_per_second is not None and p1.batch_duration_ms and p1.batch_duration_ms >= 3000
    assert observed(adapter, name) == v1
    assert plan(adapter, v1) == []

    # Re-apply: no changing call, the process and its registry entry are untouched.
    entry = registry_entry(state_dir, name)
    adapter.stats.reset()
    assert not adapter.apply(create).changed
    assert adapter.stats.calls == {"list": 1}
    assert registry_entry(state_dir, name) == entry and alive(entry["pid"])

    # Refusals refuse and leave the job alone.
    other_topic = kafka_job(name, topic, tmp_path, "1.0.0", bootstrap=kafka_bootstrap, topic_arg=topic + ".v2")
    more_partitions = kafka_job(name, topic, tmp_path, "1.0.0", bootstrap=kafka_bootstrap,
                                conf={"spark.sql.shuffle.partitions": "4"})
    foreign = kafka_job(name, topic, tmp_path, "1.0.0", bootstrap=kafka_bootstrap,
                        owner=Owner(release="someone-else", version="1.0.0"))
    refusals = [
        (plan(adapter, other_topic), Reason.CHECKPOINT_INCOMPATIBLE),
        (plan(adapter, more_partitions), Reason.CHECKPOINT_INCOMPATIBLE),
        (plan(adapter, foreign), Reason.NOT_OWNED),
        (diff_job(None, observed(adapter, name), DiffContext(prune=True)), Reason.DELETE_NOT_APPROVED),
    ]
    for actions, code in refusals:
        [refuse] = actions
        assert (refuse.op, refuse.reason_code) == (Op.REFUSE, code)
        with pytest.raises(PermanentBackendError):
            adapter.apply(refuse)
    assert registry_entry(state_dir, name) == entry and alive(entry["pid"])
    assert observed(adapter, name) == v1

    # Update (new version): graceful stop after the batch in flight, restart on the same checkpoint.
    v2 = kafka_job(name, topic, tmp_path, "1.0.1", bootstrap=kafka_bootstrap)
    [update] = plan(adapter, v2)
    assert update.op is Op.UPDATE and "version: 1.0.0 → 1.0.1" in [str(c) for c in update.changes]
    flying = wait_for("a batch in flight", lambda: in_flight(out), timeout=60, every=0.1)
    assert adapter.apply(update).changed
    assert not alive(entry["pid"])
    last = json.loads((state_dir / "jobs" / name / "status.prev.json").read_text())
    assert last["batchId"] >= flying and last["batchId"] in batch_ids(ck, "commits")
    v1_batches = [b for ev, b, v in batch_log(out) if v == "1.0.0" and ev == "start"]
    assert all(("done", b, "1.0.0") in batch_log(out) for b in v1_batches), "a batch was cut short"
    assert max(v1_batches) == last["batchId"]
    p2 = wait_for("progress of 1.0.1", lambda: progress_at_least(adapter, name, last["batchId"] + 1, p1.run_id))
    assert p2.query_id == p1.query_id  # same checkpoint, same query
    v2_batches = [b for ev, b, v in batch_log(out) if v == "1.0.1" and ev == "start"]
    assert min(v2_batches) == last["batchId"] + 1  # resumed right after the last committed batch
    assert observed(adapter, name) == v2
    assert plan(adapter, v2) == []

    # A controller restart: a new runner and adapter find the same process through the registry.
    adapter = SparkAdapter(make_runner(), stop_timeout=90)
    live = observed(adapter, name)
    assert live.running and live.version == "1.0.1"
    assert registry_entry(state_dir, name)["pid"] != entry["pid"]
    assert plan(adapter, v2) == []

    # Drift made outside pipectl: kill -9 the driver. The rule plans a start; apply repairs it.
    pid = registry_entry(state_dir, name)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for("the driver to die", lambda: not alive(pid), timeout=20)
    assert not observed(adapter, name).running
    [start] = plan(adapter, v2)
    assert start.op is Op.CREATE and start.reason.startswith("not running") and start.changes == []
    committed = max(batch_ids(ck, "commits"))
    assert adapter.apply(start).changed
    p3 = wait_for("progress after the repair", lambda: progress_at_least(adapter, name, committed + 1, p2.run_id))
    assert p3.query_id == p1.query_id
    assert plan(adapter, v2) == []

    # Prune with approval: stopped and forgotten, the checkpoint stays.
    pid = registry_entry(state_dir, name)["pid"]
    [delete] = diff_job(None, observed(adapter, name), DiffContext(prune=True, allow_delete=frozenset({name})))
    assert delete.op is Op.DELETE
    assert adapter.apply(delete).changed
    assert not alive(pid) and adapter.observe(JOB, [name]) == {}
    assert not (state_dir / "jobs" / f"{name}.json").exists()
    assert max(batch_ids(ck, "commits")) >= p3.batch_id
    assert not adapter.apply(delete).changed


def test_rate_job_blue_green_stop_and_kill(
    make_runner: Callable[[], LocalRunner], safe_name: Callable[[str], str], tmp_path: Path,
) -> None:
    name = safe_name("it-spark-rate")
    adapter = SparkAdapter(make_runner(), stop_timeout=90)
    # As the plan builds it for an environment with spark.checkpointRoot and spark.conf (merged under
    # the job's own conf: tests/unit/plan/test_overrides.py).
    ck_root = tmp_path / "checkpoint-root"
    conf = {"spark.sql.session.timeZone": "America/Chicago", "spark.sql.shuffle.partitions": "2"}
    v1 = rate_job(name, tmp_path, "1.0.0", strategy="blueGreen", ck_root=ck_root, conf=conf)
    ck1 = Path(v1.checkpoint)

    assert adapter.apply(plan(adapter, v1)[0]).changed
    p1 = wait_for("progress of 1.0.0", lambda: progress_at_least(adapter, name, 1))
    assert ck1.is_relative_to(ck_root) and batch_ids(ck1, "commits"), "Spark commits under checkpointRoot"
    # The running driver (the spark-submit JVM) was given the deploy mode and every conf entry.
    cmdline = Path(f"/proc/{registry_entry(tmp_path / 'state', name)['pid']}/cmdline").read_bytes().split(b"\0")
    args = [a.decode() for a in cmdline]
    assert args[args.index("--deploy-mode") + 1] == "client"
    confs = {args[i + 1] for i, a in enumerate(args) if a == "--conf"}
    assert {"spark.sql.session.timeZone=America/Chicago", "spark.sql.shuffle.partitions=2"} <= confs
    assert args[args.index("--checkpoint") + 1] == str(ck1)

    # blueGreen: a new version runs on its own checkpoint (fresh state, new query id).
    v2 = rate_job(name, tmp_path, "2.0.0", strategy="blueGreen")
    ck2 = Path(v2.checkpoint)
    assert ck2 != ck1
    [update] = plan(adapter, v2)
    assert update.op is Op.UPDATE and "progressive delivery deploys each version as its own job" in update.reason
    assert adapter.apply(update).changed
    p2 = wait_for("progress of 2.0.0", lambda: progress_at_least(adapter, name, 0, p1.run_id))
    assert p2.query_id != p1.query_id
    assert batch_ids(ck2, "commits") and batch_ids(ck1, "commits")
    assert observed(adapter, name) == v2

    # running: false → graceful stop; the last reported batch is committed; re-apply is a no-op.
    stopped = v2.model_copy(update={"running": False})
    [stop] = plan(adapter, stopped)
    assert stop.op is Op.UPDATE and [str(c) for c in stop.changes] == ["running: True → False"]
    pid = registry_entry(tmp_path / "state", name)["pid"]
    assert adapter.apply(stop).changed
    assert not alive(pid)
    final = json.loads((tmp_path / "state" / "jobs" / name / "status.json").read_text())
    assert final["batchId"] == max(batch_ids(ck2, "commits")) == max(batch_ids(ck2, "offsets"))
    entry = registry_entry(tmp_path / "state", name)
    assert not adapter.apply(stop).changed
    assert registry_entry(tmp_path / "state", name) == entry
    assert plan(adapter, stopped) == []
    assert not observed(adapter, name).running

    # kill is a no-op on a stopped job; the rule plans a start when it should run again.
    assert not adapter.kill(name).changed
    [start] = plan(adapter, v2)
    assert start.op is Op.CREATE
