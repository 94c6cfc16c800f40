"""``StandaloneRunner`` on the stack's Spark standalone cluster (components spark-master and
spark-worker): a supervised cluster-mode driver is re-adopted by a new runner (a controller
restart) without a second submission, survives kill -9 of its JVM by resuming from its
checkpoint, never sees the controller's environment, and stops through its stop file.

The job is ``jobs/rate_to_parquet.py`` (rate source, runs until stopped). Drivers and their JVMs
are checked through the master's JSON UI and /proc, not only through the runner.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.spark_standalone import RestMasterApi, StandaloneRunner
from controller.devstack.info import spark_env as stack_spark_env
from controller.model.errors import PermanentBackendError
from controller.plan.desired import digest
from controller.plan.resources import StreamingJobResource

pytestmark = pytest.mark.integration

JOBS_ROOT = Path(__file__).resolve().parent
START_TIMEOUT = 180.0  # driver JVM, executor JVM and the first batches on a shared 2-core machine


def wait_for(what: str, fn: Callable[[], Any], timeout: float = START_TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def batch_id(status_file: str) -> int | None:
    try:
        return int(json.loads(Path(status_file).read_text())["batchId"])
    except (OSError, ValueError, KeyError):
        return None


def driver_jvms(submission_id: str) -> list[int]:
    """DriverWrapper JVMs the worker runs for this submission (its work dir is in their argv)."""
    out = []
    for d in Path("/proc").iterdir():
        try:
            argv = (d / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "org.apache.spark.deploy.worker.DriverWrapper" in argv and any(submission_id in a for a in argv):
            out.append(int(d.name))
    return out


def child_environ(pid: int) -> dict[str, str]:
    """The environment of the Python driver process the JVM ``pid`` started."""
    children: list[str] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += (task / "children").read_text().split()
        except OSError:
            pass  # a JVM thread that ended while we looked
    assert children, f"driver JVM {pid} has no Python child"
    raw = Path(f"/proc/{children[0]}/environ").read_bytes().split(b"\0")
    return dict(e.decode(errors="replace").partition("=")[::2] for e in raw if b"=" in e)


@pytest.fixture
def master(stack: dict[str, Any]) -> dict[str, Any]:
    comp = stack["components"].get("spark-master", {})
    api = RestMasterApi(comp.get("rest_url", ""), comp.get("ui_url", "")) if comp.get("rest_url") else None
    if api is None:
        pytest.fail("the stack has no spark-master: python -m controller.devstack up --only spark-cluster")
    return {"url": comp["url"], "api": api}


@pytest.fixture
def cleanup(master: dict[str, Any]) -> Iterator[list[str]]:
    ids: list[str] = []
    yield ids
    active = {d["id"] for d in master["api"].active_drivers()}
    for sid in ids:
        if sid in active:
            master["api"].kill(sid)


def test_spark_cluster_driver_readopted(
    tmp_path: Path, master: dict[str, Any], cleanup: list[str], unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api: RestMasterApi = master["api"]
    # What a controller holds in its environment must not reach a driver.
    monkeypatch.setenv("PIPECTL_API_TOKEN", "controller-secret")
    monkeypatch.setenv("PIPECTL_STATE", "postgresql://controller/state")
    env = stack_spark_env()
    entry = "jobs/rate_to_parquet.py"
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    job = StreamingJobResource(
        name=f"cl-{unique_name}", version="1.0.0", entrypoint=entry,
        entrypoint_digest=digest((JOBS_ROOT / entry).read_bytes()),
        args=["--checkpoint", str(ckpt), "--output", str(out), "--query-name", f"cl-{unique_name}",
              "--version", "1.0.0", "--trigger", "2s", "--rows-per-second", "2"],
        checkpoint=str(ckpt), running=True,
    )
    state = tmp_path / "state"

    def new_runner() -> StandaloneRunner:  # a controller (re)start: nothing kept in memory
        return StandaloneRunner(state, JOBS_ROOT, env, master["url"], api)

    started = new_runner().start(job)
    sid = started.record.submission_id
    assert sid is not None and sid.startswith("driver-")
    cleanup.append(sid)
    rec_file = json.loads((state / "jobs" / f"{job.name}.json").read_text())
    assert rec_file["submission_id"] == sid and rec_file["pid"] is None
    wait_for("the first batches", lambda: (batch_id(started.record.status_file) or 0) >= 2)

    # Restart: a new runner re-adopts the driver from its record; no second submission.
    runner = new_runner()
    listed = runner.list()
    assert list(listed) == [job.name] and listed[job.name].alive
    assert listed[job.name].record.submission_id == sid
    with pytest.raises(PermanentBackendError, match="already running"):
        runner.start(job)
    mine = [d for d in api.active_drivers() if d["id"] == sid]
    assert [d["state"] for d in mine] == ["RUNNING"]
    assert not [d for d in api.active_drivers() if d["id"] != sid and d["starttime"] >= mine[0]["starttime"]]

    jvms = driver_jvms(sid)
    assert len(jvms) == 1, jvms
    driver_env = child_environ(jvms[0])
    assert "PIPECTL_API_TOKEN" not in driver_env and "PIPECTL_STATE" not in driver_env
    assert driver_env["PYSPARK_PYTHON"] == env["PYSPARK_PYTHON"]

    # kill -9 the driver JVM: the worker relaunches it (supervise) under the same submission id,
    # and it resumes from its checkpoint: batch ids go on from where they were.
    before = batch_id(started.record.status_file) or 0
    os.kill(jvms[0], signal.SIGKILL)
    relaunched = wait_for("a new driver JVM", lambda: [p for p in driver_jvms(sid) if p != jvms[0]])
    assert len(relaunched) == 1
    # A fresh run on an empty checkpoint would start again at batch 0.
    wait_for("progress after the relaunch", lambda: (batch_id(started.record.status_file) or 0) > before + 1)
    after = runner.list([job.name])[job.name]
    assert after.alive and after.record.submission_id == sid
    assert [d["id"] for d in api.active_drivers() if d["id"] == sid] == [sid]
    commits = sorted(int(p.name) for p in (ckpt / "commits").iterdir() if p.name.isdigit())
    assert commits == list(range(commits[-1] + 1)) and commits[-1] > before

    # Graceful stop through the stop file: the driver finishes (no kill) and is not relaunched.
    assert new_runner().stop(job.name, timeout=120.0)
    assert sid not in {d["id"] for d in api.active_drivers()}
    with urllib.request.urlopen(f"{api.rest_url}/v1/submissions/status/{sid}", timeout=10) as resp:
        assert json.loads(resp.read())["driverState"] == "FINISHED"  # not KILLED
    assert not driver_jvms(sid)
    assert new_runner().list([job.name])[job.name].alive is False


def test_spark_cluster_driver_reads_kafka_with_the_stack_jars(
    tmp_path: Path, master: dict[str, Any], cleanup: list[str], unique_name: str, kafka_bootstrap: str,
) -> None:
    """The Kafka source's jars reach a cluster driver from spark-defaults.conf (spark-submit is not
    in the path to read them): the driver consumes every record of a small topic."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    topic = f"cluster.{unique_name}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(20):
        producer.produce(topic, f"v{i}".encode())
    assert producer.flush(30) == 0
    entry = "jobs/kafka_to_parquet.py"
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    job = StreamingJobResource(
        name=f"ck-{unique_name}", version="1", entrypoint=entry,
        entrypoint_digest=digest((JOBS_ROOT / entry).read_bytes()),
        args=["--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--checkpoint", str(ckpt),
              "--query-name", f"ck-{unique_name}", "--version", "1", "--output", str(out)],
        checkpoint=str(ckpt), running=True,
    )
    runner = StandaloneRunner(tmp_path / "state", JOBS_ROOT, stack_spark_env(), master["url"], master["api"])
    sid = runner.start(job).record.submission_id
    assert sid is not None
    cleanup.append(sid)

    def consumed() -> int:
        progress = runner.list([job.name])[job.name].progress or {}
        ends = [s.get("endOffset") or {} for s in progress.get("sources", [])]
        return sum(int(o) for e in ends if isinstance(e, dict) for o in (e.get(topic) or {}).values())

    assert wait_for("all 20 records", lambda: consumed() >= 20) and consumed() == 20
    assert "done 0 1" in (out / "_batches.log").read_text()
    assert runner.stop(job.name, timeout=120.0)
    admin.delete_topics([topic])
