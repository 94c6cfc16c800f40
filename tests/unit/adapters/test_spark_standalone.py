"""``StandaloneRunner`` against a fake of its own ``MasterApi``: the submission it builds, intent
first and re-adoption (no second driver), the stop file before the master's kill, and what of
the controller's environment reaches a driver. The real cluster: tests/integration/test_spark_cluster.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.spark_standalone import (
    JAVA_MODULE_OPTIONS,
    PYTHON_RUNNER,
    StandaloneRunner,
    pick_orphan,
    standalone_api,
)
from controller.model.endpoints import REGISTRY_TOKEN_ENV, SparkEndpoint
from controller.model.errors import PermanentBackendError
from controller.plan.desired import digest
from controller.plan.resources import StreamingJobResource
from controller.wiring import spark_runner

CODE = b"print('job')\n"
MASTER = "spark://10.0.0.5:7077"


class FakeMaster:
    """The master's driver table; ``create`` can fail after the driver exists (a lost reply)."""

    def __init__(self) -> None:
        self.drivers: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.killed: list[str] = []
        self.lose_reply = False

    def create(self, request: dict[str, Any]) -> str:
        self.requests.append(request)
        sid = f"driver-{len(self.requests):04d}"
        now_ms = datetime.now(UTC).timestamp() * 1000
        self.drivers[sid] = {"id": sid, "state": "RUNNING", "starttime": now_ms, "mainclass": PYTHON_RUNNER}
        if self.lose_reply:
            raise OSError("connection reset")
        return sid

    def kill(self, submission_id: str) -> None:
        self.killed.append(submission_id)
        self.drivers[submission_id]["state"] = "KILLED"

    def active_drivers(self) -> list[dict[str, Any]]:
        return [d for d in self.drivers.values() if d["state"] in ("SUBMITTED", "RUNNING", "RELAUNCHING")]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "repo" / "jobs").mkdir(parents=True)
    (tmp_path / "repo" / "jobs" / "j.py").write_bytes(CODE)
    return tmp_path / "repo"


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    d = tmp_path / "conf"
    d.mkdir()
    (d / "spark-defaults.conf").write_text(
        "# comment\nspark.master  local[2]\nspark.jars  /j/kafka.jar\nspark.driver.host 127.0.0.1\n"
        "spark.driver.extraClassPath /j/iceberg.jar\nspark.sql.shuffle.partitions 4\n"
    )
    return d


def job(name: str = "dev-r-j") -> StreamingJobResource:
    return StreamingJobResource(
        name=name, version="1.0.0", entrypoint="jobs/j.py", entrypoint_digest=digest(CODE),
        args=["--checkpoint", "/ck/j"], conf={"spark.sql.shuffle.partitions": "2"}, checkpoint="/ck/j",
    )


def runner(tmp_path: Path, repo: Path, master: FakeMaster, conf_dir: Path | None = None) -> StandaloneRunner:
    env = {"SPARK_HOME": "/opt/spark", "PYSPARK_PYTHON": "/venv/bin/python"}
    if conf_dir is not None:
        env["SPARK_CONF_DIR"] = str(conf_dir)
    return StandaloneRunner(tmp_path / "state", repo, env, MASTER, master)


def test_submission_is_a_supervised_python_driver_with_the_stack_defaults(
    tmp_path: Path, repo: Path, conf_dir: Path
) -> None:
    master = FakeMaster()
    state = runner(tmp_path, repo, master, conf_dir).start(job())
    req = master.requests[0]
    assert state.alive and state.record.submission_id == "driver-0001" and state.record.pid is None
    assert req["mainClass"] == PYTHON_RUNNER
    entry = str(repo / "jobs" / "j.py")
    run_dir = tmp_path / "state" / "jobs" / "dev-r-j"
    assert req["appArgs"] == [entry, "", "--checkpoint", "/ck/j", "--status-file",
                              str(run_dir / "status.json"), "--stop-file", str(run_dir / "stop")]
    props = req["sparkProperties"]
    assert props["spark.master"] == MASTER and props["spark.submit.deployMode"] == "cluster"
    assert props["spark.driver.supervise"] == "true" and props["spark.app.name"] == "dev-r-j"
    assert props["spark.jars"] == "/j/kafka.jar"  # from spark-defaults.conf, as spark-submit reads it
    assert props["spark.executor.extraClassPath"] == "/j/iceberg.jar"
    assert props["spark.sql.shuffle.partitions"] == "2"  # the job's conf wins
    assert "spark.driver.host" not in props  # the controller's host, not the worker's
    assert props["spark.driver.extraJavaOptions"] == JAVA_MODULE_OPTIONS


def test_driver_env_carries_nothing_of_the_controller(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPECTL_API_TOKEN", "secret")
    monkeypatch.setenv("PIPECTL_STATE", "postgresql://x/y")
    master = FakeMaster()
    runner(tmp_path, repo, master).start(job())
    env = master.requests[0]["environmentVariables"]
    assert set(env) <= {"PYSPARK_PYTHON", "PYTHONPATH", "LANG", "LC_ALL", "TZ"}
    assert env["PYSPARK_PYTHON"] == "/venv/bin/python"
    assert str(Path(__file__).resolve().parents[3]) in env["PYTHONPATH"].split(":")  # controller.jobkit


def test_driver_env_carries_the_registry_token_when_the_controller_hands_one(tmp_path: Path, repo: Path) -> None:
    master = FakeMaster()
    env = {"SPARK_HOME": "/opt/spark", "PYSPARK_PYTHON": "/venv/bin/python", REGISTRY_TOKEN_ENV: "pcr_t0ken"}
    StandaloneRunner(tmp_path / "state", repo, env, MASTER, master).start(job())
    assert master.requests[0]["environmentVariables"][REGISTRY_TOKEN_ENV] == "pcr_t0ken"
    written = [p for p in (tmp_path / "state").rglob("*") if p.is_file()]
    assert written and not [p for p in written if b"pcr_t0ken" in p.read_bytes()]


def test_new_runner_readopts_by_submission_id_and_refuses_a_second_start(tmp_path: Path, repo: Path) -> None:
    master = FakeMaster()
    runner(tmp_path, repo, master).start(job())
    again = runner(tmp_path, repo, master)  # a controller restart
    listed = again.list()
    assert list(listed) == ["dev-r-j"] and listed["dev-r-j"].alive
    with pytest.raises(PermanentBackendError, match="already running"):
        again.start(job())
    assert len(master.requests) == 1


def test_lost_create_reply_is_adopted_not_submitted_twice(tmp_path: Path, repo: Path) -> None:
    master = FakeMaster()
    master.lose_reply = True
    with pytest.raises(OSError):
        runner(tmp_path, repo, master).start(job())
    record = json.loads((tmp_path / "state" / "jobs" / "dev-r-j.json").read_text())
    assert record["submission_id"] is None  # intent written before the call
    master.lose_reply = False
    again = runner(tmp_path, repo, master)
    assert again.list()["dev-r-j"].alive
    assert again.list()["dev-r-j"].record.submission_id == "driver-0001"
    assert len(master.requests) == 1


def test_interrupted_start_without_a_driver_is_marked_not_started(tmp_path: Path, repo: Path) -> None:
    master = FakeMaster()
    r = runner(tmp_path, repo, master)
    r.start(job())
    master.drivers.clear()
    rec = r._read("dev-r-j")
    assert rec is not None
    rec.submission_id = None
    r._write(rec)  # as if the controller died before the create call
    assert runner(tmp_path, repo, master).list()["dev-r-j"].alive is False
    runner(tmp_path, repo, master).start(job())  # the next pass starts it, once
    assert len(master.active_drivers()) == 1


def test_pick_orphan_skips_claimed_older_and_non_python_drivers() -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    ms = since.timestamp() * 1000
    drivers = [
        {"id": "d-old", "state": "RUNNING", "starttime": ms - 60_000, "mainclass": PYTHON_RUNNER},
        {"id": "d-mine", "state": "RUNNING", "starttime": ms + 500, "mainclass": PYTHON_RUNNER},
        {"id": "d-claimed", "state": "RUNNING", "starttime": ms + 900, "mainclass": PYTHON_RUNNER},
        {"id": "d-jar", "state": "RUNNING", "starttime": ms + 900, "mainclass": "com.example.Main"},
    ]
    assert pick_orphan(drivers, {"d-claimed"}, since) == ["d-mine"]
    assert pick_orphan(drivers, {"d-claimed", "d-mine"}, since + timedelta(hours=1)) == []


def test_request_stop_touches_the_stop_file_then_kills_after_the_timeout(tmp_path: Path, repo: Path) -> None:
    master = FakeMaster()
    r = runner(tmp_path, repo, master)
    state = r.start(job())
    assert r.request_stop("dev-r-j", timeout=0.0) is False
    assert Path(state.record.stop_file).exists() and master.killed == []
    assert r.request_stop("dev-r-j", timeout=0.0) is False
    assert master.killed == ["driver-0001"]
    assert r.request_stop("dev-r-j", timeout=0.0) is True
    assert r.list()["dev-r-j"].record.stopped_at is not None


def test_graceful_stop_does_not_kill(tmp_path: Path, repo: Path) -> None:
    master = FakeMaster()
    r = runner(tmp_path, repo, master)
    r.start(job())
    assert r.request_stop("dev-r-j", timeout=60.0) is False
    master.drivers["driver-0001"]["state"] = "FINISHED"  # the job saw its stop file and exited 0
    assert r.request_stop("dev-r-j", timeout=60.0) is True
    assert master.killed == []


def test_wiring_picks_the_runner_from_the_deploy_mode(tmp_path: Path, repo: Path) -> None:
    cluster = spark_runner(tmp_path, repo, SparkEndpoint(master=MASTER, deploy_mode="cluster"))
    assert isinstance(cluster, StandaloneRunner)
    local = spark_runner(tmp_path, repo, SparkEndpoint(master="local[1]"))
    assert type(local).__name__ == "LocalRunner"


def test_standalone_urls_default_to_the_master_host() -> None:
    api = standalone_api(MASTER, {})
    assert (api.rest_url, api.ui_url) == ("http://10.0.0.5:6066", "http://10.0.0.5:8080")
    api = standalone_api(MASTER, {"PIPECTL_SPARK_REST_URL": "http://m:1", "PIPECTL_SPARK_MASTER_UI_URL": "http://m:2"})
    assert (api.rest_url, api.ui_url) == ("http://m:1", "http://m:2")
