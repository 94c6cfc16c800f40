"""LocalRunner's process handling without Spark: SPARK_HOME points at a stub ``bin/spark-submit``.

The stub is a small Python program that honours the lifecycle contract the way
``controller.jobkit.lifecycle`` does (progress JSON to --status-file, graceful exit on
--stop-file) and can misbehave on request (``STUB_MODE``) to exercise the SIGTERM/SIGKILL
escalation and start-up failures. The real thing is tests/integration/test_adapter_spark.py.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from controller.adapters.spark import JobProgress, JobRecord, LocalRunner, SparkAdapter
from controller.api.schema_registry import new_job_token
from controller.model.endpoints import REGISTRY_TOKEN_ENV
from controller.model.errors import PermanentBackendError
from controller.plan.actions import Action, DiffContext, Op
from controller.plan.desired import digest
from controller.plan.resources import Owner, ResourceKind, StreamingJobResource
from controller.plan.rules.spark import diff_job

STUB = """#!{python}
import json, os, signal, sys, time
argv = sys.argv[1:]
mode = os.environ.get("STUB_MODE", "graceful")
status = argv[argv.index("--status-file") + 1]
stop = argv[argv.index("--stop-file") + 1]
with open(os.path.join(os.path.dirname(status), "argv.json"), "w") as f:
    json.dump(argv, f)
with open(os.path.join(os.path.dirname(status), "registry_token.json"), "w") as f:
    json.dump(os.environ.get("PIPECTL_SCHEMA_REGISTRY_TOKEN"), f)
if mode == "crash":
    print("boom: cannot start", flush=True)
    sys.exit(3)
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
batch = 0
def write(b, extra=None):
    p = {{"id": "q1", "runId": "r-%d" % os.getpid(), "name": "stub", "batchId": b,
         "timestamp": "2026-11-26T10:00:0%dZ" % (b % 10), "inputRowsPerSecond": 1.5,
         "processedRowsPerSecond": 2.0, "durationMs": {{"triggerExecution": 120}},
         "sources": [{{"description": "KafkaV2[Subscribe[t]]", "endOffset": {{"t": {{"0": b, "1": 2 * b}}}},
                      "latestOffset": {{"t": {{"0": b + 1, "1": 2 * b}}}}}}], **(extra or {{}})}}
    with open(status + ".tmp", "w") as f:
        json.dump(p, f)
    os.replace(status + ".tmp", status)
while True:
    write(batch)
    if os.path.exists(stop) and mode not in ("ignore-stop", "ignore-term"):
        write(batch, {{"stoppedGracefully": True}})
        sys.exit(0)
    batch += 1
    time.sleep(0.1)
"""

CODE = b"print('job')\n"


@pytest.fixture
def spark_home(tmp_path: Path) -> Path:
    home = tmp_path / "spark"
    (home / "bin").mkdir(parents=True)
    sub = home / "bin" / "spark-submit"
    sub.write_text(STUB.format(python=sys.executable))
    sub.chmod(sub.stat().st_mode | stat.S_IXUSR)
    return home


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "jobs").mkdir(parents=True)
    (root / "jobs" / "j.py").write_bytes(CODE)
    return root


def make_runner(tmp_path: Path, spark_home: Path, repo: Path, mode: str = "graceful") -> LocalRunner:
    env = {"SPARK_HOME": str(spark_home), "STUB_MODE": mode}
    return LocalRunner(tmp_path / "state", repo, env, term_grace=2.0, startup_grace=0.3)


def job(**kw: object) -> StreamingJobResource:
    base: dict[str, object] = {
        "name": "dev-r-j", "owner": Owner(release="r", version="1.0.0"), "version": "1.0.0",
        "entrypoint": "jobs/j.py", "entrypoint_digest": digest(CODE),
        "args": ["--topic", "dev.t", "--checkpoint", "ck/j", "--version", "1.0.0"],
        "conf": {"spark.sql.shuffle.partitions": "2"}, "checkpoint": "ck/j",
    }
    base.update(kw)
    return StreamingJobResource.model_validate(base)


def plan(adapter: SparkAdapter, desired: StreamingJobResource) -> list[Action]:
    live = adapter.observe(ResourceKind.STREAMING_JOB, [desired.name]).get(desired.name)
    assert live is None or isinstance(live, StreamingJobResource)
    return diff_job(desired, live, DiffContext())


def wait_progress(adapter: SparkAdapter, name: str, min_batch: int = 1) -> JobProgress:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        p = adapter.progress(name)
        if p is not None and p.batch_id >= min_batch:
            return p
        time.sleep(0.1)
    raise AssertionError("no progress")


def record(tmp_path: Path, name: str = "dev-r-j") -> JobRecord:
    return JobRecord.model_validate_json((tmp_path / "state" / "jobs" / f"{name}.json").read_text())


def test_start_observe_noop_restart_survives_new_instance(tmp_path: Path, spark_home: Path, repo: Path) -> None:
    adapter = SparkAdapter(make_runner(tmp_path, spark_home, repo), stop_timeout=5)
    desired = job()
    [create] = plan(adapter, desired)
    assert create.op is Op.CREATE
    assert adapter.apply(create).changed
    try:
        p = wait_progress(adapter, desired.name)
        assert p.end_offsets["t"][1] == 2 * p.batch_id
        assert p.batch_duration_ms == 120
        live = adapter.observe(ResourceKind.STREAMING_JOB, [desired.name])[desired.name]
        assert isinstance(live, StreamingJobResource) and live.running
        assert live == desired  # observed spec equals desired: the rule sees no change
        assert plan(adapter, desired) == []
        pid = record(tmp_path).pid

        argv = json.loads((tmp_path / "state" / "jobs" / desired.name / "argv.json").read_text())
        assert argv[-4:] == ["--status-file", str(tmp_path / "state/jobs/dev-r-j/status.json"),
                             "--stop-file", str(tmp_path / "state/jobs/dev-r-j/stop")]
        assert "--conf" in record(tmp_path).argv and "spark.sql.shuffle.partitions=2" in record(tmp_path).argv

        again = adapter.apply(create)
        assert not again.changed and record(tmp_path).pid == pid

        # A controller restart: a new runner and adapter over the same state directory.
        adapter2 = SparkAdapter(make_runner(tmp_path, spark_home, repo), stop_timeout=5)
        assert adapter2.observe(ResourceKind.STREAMING_JOB, [desired.name])[desired.name].running  # type: ignore[union-attr]
        assert adapter2.stats.calls == {"list": 1}

        v2 = job(version="1.1.0", args=["--topic", "dev.t", "--checkpoint", "ck/j", "--version", "1.1.0"])
        [update] = plan(adapter2, v2)
        assert update.op is Op.UPDATE
        assert adapter2.apply(update).changed
        status = json.loads((tmp_path / "state/jobs/dev-r-j/status.json").read_text())
        assert status["runId"] != f"r-{pid}"  # the old run's progress was cleared at start
        assert record(tmp_path).pid != pid and record(tmp_path).version == "1.1.0"
        assert plan(adapter2, v2) == []
    finally:
        adapter.runner.kill(desired.name)


def test_graceful_stop_uses_the_stop_file(tmp_path: Path, spark_home: Path, repo: Path) -> None:
    runner = make_runner(tmp_path, spark_home, repo)
    runner.start(job())
    with capture_logs() as logs:
        assert runner.stop("dev-r-j", timeout=5)
    status = json.loads((tmp_path / "state/jobs/dev-r-j/status.json").read_text())
    assert status["stoppedGracefully"] is True
    assert [e["event"] for e in logs] == ["spark.job.stop_requested", "spark.job.stopped"]
    assert record(tmp_path).stopped_at is not None
    assert not runner.stop("dev-r-j", timeout=5)  # idempotent


def test_stop_escalates_to_sigterm(tmp_path: Path, spark_home: Path, repo: Path) -> None:
    runner = make_runner(tmp_path, spark_home, repo, mode="ignore-stop")
    runner.start(job())
    with capture_logs() as logs:
        assert runner.stop("dev-r-j", timeout=0.5)
    events = [e["event"] for e in logs]
    assert "spark.job.stop_timeout_sigterm" in events and "spark.job.sigterm_ignored_sigkill" not in events
    assert not runner.list()["dev-r-j"].alive


def test_stop_escalates_to_sigkill(tmp_path: Path, spark_home: Path, repo: Path) -> None:
    runner = make_runner(tmp_path, spark_home, repo, mode="ignore-term")
    runner.start(job())
    with capture_logs() as logs:
        assert runner.stop("dev-r-j", timeout=0.5)
    events = [e["event"] for e in logs]
    assert events[-1] == "spark.job.sigterm_ignored_sigkill"
    assert not runner.list()["dev-r-j"].alive


def test_reused_pid_is_not_the_job(tmp_path: Path, spark_home: Path, repo: Path) -> None:
    runner = make_runner(tmp_path, spark_home, repo)
    runner.start(job())
    try:
        rec = record(tmp_path)
        # Same pid, another process start time: what a reused pid looks like after a restart.
        tampered = rec.model_copy(update={"start_ticks": (rec.start_ticks or 0) + 1})
        path = tmp_path / "state/jobs/dev-r-j.json"
        path.write_text(tampered.model_dump_json())
        fresh = make_runner(tmp_path, spark_home, repo)
        assert not fresh.list()["dev-r-j"].alive
        assert not fresh.kill("dev-r-j")  # never signals a process that is not the job
        assert os.path.exists(f"/proc/{rec.pid}")
        path.write_text(rec.model_dump_json())
    finally:
        runner.kill("dev-r-j")


def test_restart_runs_the_registered_spec_again(tmp_path: Path, spark_home: Path, repo: Path) -> None:
    adapter = SparkAdapter(make_runner(tmp_path, spark_home, repo), stop_timeout=5)
    adapter.apply(plan(adapter, job())[0])
    try:
        before = record(tmp_path)
        assert adapter.restart("dev-r-j").changed
        after = record(tmp_path)
        assert after.pid != before.pid and after.argv == before.argv and after.version == before.version
        assert adapter.runner.list()["dev-r-j"].alive
        assert (tmp_path / "state/jobs/dev-r-j/status.prev.json").exists()
        assert plan(adapter, job()) == []
    finally:
        adapter.runner.kill("dev-r-j")
    with pytest.raises(PermanentBackendError, match="not registered"):
        adapter.restart("dev-r-other")


def test_kill_then_rule_plans_a_start(tmp_path: Path, spark_home: Path, repo: Path) -> None:
    adapter = SparkAdapter(make_runner(tmp_path, spark_home, repo))
    adapter.apply(plan(adapter, job())[0])
    assert adapter.kill("dev-r-j").changed
    assert not adapter.kill("dev-r-j").changed
    [a] = plan(adapter, job())
    assert a.op is Op.CREATE and a.reason.startswith("not running")


def test_crash_at_start_reports_the_log(tmp_path: Path, spark_home: Path, repo: Path) -> None:
    runner = make_runner(tmp_path, spark_home, repo, mode="crash")
    # The stub exits at once, but starting Python takes longer than 0.3 s at load 12-15.
    runner.startup_grace = 10.0
    with pytest.raises(PermanentBackendError, match="boom: cannot start"):
        runner.start(job())
    assert not runner.list()["dev-r-j"].alive


def test_code_on_disk_must_match_the_plan(tmp_path: Path, spark_home: Path, repo: Path) -> None:
    runner = make_runner(tmp_path, spark_home, repo)
    with pytest.raises(PermanentBackendError, match="on disk is"):
        runner.start(job(entrypoint_digest="sha256:" + "0" * 64))
    with pytest.raises(PermanentBackendError, match="outside the repository"):
        runner.start(job(entrypoint="../x.py"))
    with pytest.raises(PermanentBackendError, match="invalid Spark conf key"):
        runner.start(job(conf={"not.spark": "1"}))
    with pytest.raises(PermanentBackendError, match="invalid job name"):
        runner.start(job(name="../evil"))
    assert runner.list() == {}


def test_refuse_and_delete(tmp_path: Path, spark_home: Path, repo: Path) -> None:
    adapter = SparkAdapter(make_runner(tmp_path, spark_home, repo), stop_timeout=5)
    adapter.apply(plan(adapter, job())[0])
    [refuse] = plan(adapter, job(args=["--topic", "dev.other", "--checkpoint", "ck/j", "--version", "1.0.0"]))
    assert refuse.op is Op.REFUSE
    pid = record(tmp_path).pid
    with pytest.raises(PermanentBackendError, match="refused"):
        adapter.apply(refuse)
    assert record(tmp_path).pid == pid and adapter.runner.list()["dev-r-j"].alive
    live = adapter.observe_all()["dev-r-j"]
    [delete] = diff_job(None, live, DiffContext(allow_delete=frozenset({"dev-r-j"})))
    assert adapter.apply(delete).changed
    assert adapter.observe_all() == {}
    assert not adapter.apply(delete).changed


def test_blue_green_runs_on_its_declared_checkpoint(tmp_path: Path, spark_home: Path, repo: Path) -> None:
    # desired state gives each blue/green version its own checkpoint; the runner adds nothing
    runner = make_runner(tmp_path, spark_home, repo)
    state = runner.start(job(strategy="blueGreen", version="2.0.0"))
    try:
        assert state.record.effective_checkpoint == "ck/j"
        assert state.record.args[3] == "ck/j"
        assert state.record.resource(running=True).checkpoint == "ck/j"
    finally:
        runner.kill("dev-r-j")


def test_progress_from_spark_json() -> None:
    p = JobProgress.from_json({
        "id": "a", "runId": "b", "name": "q", "batchId": 7, "numInputRows": 10,
        "inputRowsPerSecond": "NaN", "processedRowsPerSecond": 3.5, "timestamp": "2026-11-26T10:00:00.123Z",
        "durationMs": {"triggerExecution": 900}, "eventTime": {"watermark": "2026-11-26T09:59:00.000Z"},
        "sources": [
            {"description": "KafkaV2[Subscribe[a,b]]", "endOffset": '{"a":{"0":5,"1":6},"b":{"0":1}}',
             "latestOffset": {"a": {"0": 9, "1": 6}, "b": {"0": 1}}},
            {"description": "RateStreamV2", "endOffset": 123},
        ],
    })
    assert p.end_offsets == {"a": {0: 5, 1: 6}, "b": {0: 1}}
    assert p.sources[0].latest_offsets["a"][0] == 9
    assert p.sources[1].end_offsets == {}
    assert p.input_rows_per_second is None
    assert p.watermark == "2026-11-26T09:59:00.000Z" and p.batch_duration_ms == 900
    assert p.timestamp.tzinfo is not None


def test_a_start_interrupted_after_the_intent_record_is_adopted_not_doubled(
    tmp_path: Path, spark_home: Path, repo: Path
) -> None:
    """kill -9 of the controller between the registry write and the pid write: the next runner
    finds the running process by its --stop-file and adopts it; no second job is started."""
    runner = make_runner(tmp_path, spark_home, repo)
    state = runner.start(job())
    pid = state.record.pid
    assert pid is not None
    # the crash: the record on disk is the intent (no pid yet), the process runs
    rec = record(tmp_path)
    path = tmp_path / "state" / "jobs" / "dev-r-j.json"
    path.write_text(rec.model_copy(update={"pid": None, "start_ticks": None}).model_dump_json())
    fresh = make_runner(tmp_path, spark_home, repo)
    with capture_logs() as logs:
        listed = fresh.list(["dev-r-j"])["dev-r-j"]
    assert listed.alive and listed.record.pid == pid
    assert "spark.job.adopted" in [e["event"] for e in logs]
    with pytest.raises(PermanentBackendError, match="already running"):
        fresh.start(job())
    assert fresh.stop("dev-r-j", timeout=5)


def test_an_intent_record_without_a_process_is_a_start_that_did_not_happen(
    tmp_path: Path, spark_home: Path, repo: Path
) -> None:
    runner = make_runner(tmp_path, spark_home, repo)
    runner.start(job())
    assert runner.stop("dev-r-j", timeout=5)
    rec = record(tmp_path)
    path = tmp_path / "state" / "jobs" / "dev-r-j.json"
    path.write_text(rec.model_copy(update={"pid": None, "start_ticks": None, "stopped_at": None}).model_dump_json())
    fresh = make_runner(tmp_path, spark_home, repo)
    assert not fresh.list(["dev-r-j"])["dev-r-j"].alive
    assert record(tmp_path).stopped_at is not None
    started = fresh.start(job())  # the next pass starts it, once
    assert started.alive
    assert fresh.stop("dev-r-j", timeout=5)


def test_request_stop_never_blocks_and_escalates_over_calls(tmp_path: Path, spark_home: Path, repo: Path) -> None:
    runner = make_runner(tmp_path, spark_home, repo, mode="ignore-stop")
    runner.start(job())
    t0 = time.monotonic()
    assert runner.request_stop("dev-r-j", timeout=0.5) is False  # asked; the job ignores the stop file
    assert time.monotonic() - t0 < 2.0
    time.sleep(0.6)
    with capture_logs() as logs:
        done = runner.request_stop("dev-r-j", timeout=0.5)  # past the timeout: SIGTERM
    assert "spark.job.stop_timeout_sigterm" in [e["event"] for e in logs]
    deadline = time.monotonic() + 5
    while not done and time.monotonic() < deadline:
        done = runner.request_stop("dev-r-j", timeout=0.5)
    assert done and not runner.list()["dev-r-j"].alive
    assert record(tmp_path).stopped_at is not None


def test_the_adapter_requeues_a_stop_in_the_controller(tmp_path: Path, spark_home: Path, repo: Path) -> None:
    from controller.model.errors import NotReadyYet

    adapter = SparkAdapter(make_runner(tmp_path, spark_home, repo, mode="ignore-stop"), stop_timeout=0.3)
    adapter.requeue_waits = True
    desired = job()
    [create] = plan(adapter, desired)
    adapter.apply(create)
    stopped = desired.model_copy(update={"running": False})
    [act] = plan(adapter, stopped)
    with pytest.raises(NotReadyYet, match="stopping after its current batch"):
        adapter.apply(act)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            adapter.apply(act)
            break
        except NotReadyYet:
            time.sleep(0.2)
    assert not adapter.runner.list()["dev-r-j"].alive


def test_submit_command_carries_deploy_mode_conf_and_checkpoint(tmp_path: Path, spark_home: Path, repo: Path) -> None:
    """What spark-submit gets: --master, --deploy-mode client, every conf entry (the environment's
    spark.conf merged in by the plan), and the planned checkpoint (under checkpointRoot)."""
    env = {"SPARK_HOME": str(spark_home), "STUB_MODE": "graceful"}
    runner = LocalRunner(tmp_path / "state", repo, env, master="local[1]", startup_grace=0.3)
    ckpt = "/data/ckpt/dev/r/j"
    desired = job(
        conf={"spark.sql.session.timeZone": "UTC", "spark.sql.shuffle.partitions": "2"},
        args=["--topic", "dev.t", "--checkpoint", ckpt], checkpoint=ckpt,
    )
    runner.start(desired)
    try:
        argv = json.loads((tmp_path / "state" / "jobs" / desired.name / "argv.json").read_text())
        assert record(tmp_path).argv[1:9] == [
            "--master", "local[1]", "--deploy-mode", "client", "--name", "dev-r-j", "--driver-memory", "512m",
        ]
        confs = [record(tmp_path).argv[i + 1] for i, a in enumerate(record(tmp_path).argv) if a == "--conf"]
        assert confs == [
            "spark.ui.enabled=false", "spark.ui.showConsoleProgress=false",
            "spark.sql.session.timeZone=UTC", "spark.sql.shuffle.partitions=2",
        ]
        assert argv[argv.index("--checkpoint") + 1] == ckpt
        assert record(tmp_path).effective_checkpoint == ckpt
    finally:
        assert runner.stop("dev-r-j", timeout=5)


def test_runner_refuses_cluster_deploy_mode(tmp_path: Path, spark_home: Path, repo: Path) -> None:
    with pytest.raises(PermanentBackendError, match="deploy mode 'cluster': LocalRunner runs client only"):
        LocalRunner(tmp_path / "state", repo, {"SPARK_HOME": str(spark_home)}, deploy_mode="cluster")


def test_the_registry_token_reaches_the_job_through_its_environment_only(
    tmp_path: Path, spark_home: Path, repo: Path
) -> None:
    """``Wiring.job_env`` (``controller run``'s registry token) is in the job process's environment;
    no file the runner writes (registry record, argv, log, status) holds it."""
    token = new_job_token()
    env = {"SPARK_HOME": str(spark_home), "STUB_MODE": "graceful", REGISTRY_TOKEN_ENV: token}
    runner = LocalRunner(tmp_path / "state", repo, env, master="local[1]", startup_grace=0.3)
    desired = job()
    runner.start(desired)
    try:
        run_dir = tmp_path / "state" / "jobs" / desired.name
        wait_for_file = time.monotonic() + 10
        while not (run_dir / "registry_token.json").exists() and time.monotonic() < wait_for_file:
            time.sleep(0.05)
        seen = json.loads((run_dir / "registry_token.json").read_text())
        assert seen == token
    finally:
        assert runner.stop("dev-r-j", timeout=5)
    (run_dir / "registry_token.json").unlink()  # the stub's own report, not the runner's
    written = [p for p in (tmp_path / "state").rglob("*") if p.is_file()]
    assert written and not [p for p in written if token.encode() in p.read_bytes()]


def test_wiring_puts_the_job_env_into_both_spark_submit_runners(tmp_path: Path, repo: Path) -> None:
    from controller.adapters.spark_standalone import StandaloneRunner
    from controller.model.endpoints import SparkEndpoint
    from controller.wiring import spark_runner

    job_env = {REGISTRY_TOKEN_ENV: new_job_token()}
    local = spark_runner(tmp_path, repo, SparkEndpoint(master="local[1]"), "dev", job_env)
    cluster = spark_runner(tmp_path, repo, SparkEndpoint(master="spark://m:7077", deploy_mode="cluster"), "dev",
                           job_env)
    assert isinstance(local, LocalRunner) and isinstance(cluster, StandaloneRunner)
    assert local.env[REGISTRY_TOKEN_ENV] == cluster.env[REGISTRY_TOKEN_ENV] == job_env[REGISTRY_TOKEN_ENV]
    plain = spark_runner(tmp_path, repo, SparkEndpoint(master="local[1]"))
    assert isinstance(plain, LocalRunner) and REGISTRY_TOKEN_ENV not in plain.env


def test_a_cli_verbs_jobs_read_the_registry_as_its_caller(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``build_runtime`` (every CLI verb; ``controller run`` then sets its own job token) hands the
    caller's ``$PIPECTL_SCHEMA_REGISTRY_TOKEN`` to the jobs it starts, and nothing without one."""
    import subprocess

    from controller.wiring import build_runtime

    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    state = f"sqlite:///{tmp_path / 'state' / 'state.db'}"
    monkeypatch.delenv(REGISTRY_TOKEN_ENV, raising=False)
    assert build_runtime(str(repo), state, lineage=False).wiring.job_env == {}
    monkeypatch.setenv(REGISTRY_TOKEN_ENV, "pct_callers-own")
    assert build_runtime(str(repo), state, lineage=False).wiring.job_env == {REGISTRY_TOKEN_ENV: "pct_callers-own"}
