"""SparkOperatorRunner offline: the SparkApplication it builds from a job (a pure function), the
deterministic object and label names, the record read back from the object, how the operator's
states map to alive, and start/stop/kill/forget against a fake of the runner's own narrow
``SparkApplicationApi``. The same runner on the real kube-apiserver with the operator's CRD:
tests/integration/test_spark_operator.py."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.spark_operator import (
    ANN_STARTED,
    ENDED,
    KubeSparkApplications,
    SparkOperatorRunner,
    job_record,
    label_value,
    object_name,
    spark_application,
)
from controller.model.endpoints import SparkEndpoint, SparkOperatorSpec
from controller.model.errors import PermanentBackendError
from controller.plan.resources import Owner, StreamingJobResource
from controller.wiring import spark_runner

NOW = datetime(2026, 12, 5, 14, 0, tzinfo=UTC)
SETTINGS = SparkOperatorSpec.model_validate({
    "namespace": "spark-jobs", "image": "registry.local/pipectl-jobs:1.2", "serviceAccount": "spark",
    "sparkVersion": "3.5.5", "appRoot": "/opt/repo/", "driver": {"cores": 2, "memory": "1g"},
    "executor": {"instances": 3, "cores": 1, "memory": "2g"}, "onFailureRetries": 4,
})


def job(name: str = "dev-host-metrics-events", **kw: Any) -> StreamingJobResource:
    base: dict[str, Any] = dict(
        name=name, owner=Owner(release="host-metrics", version="1.1.0"), version="1.1.0",
        entrypoint="jobs/events.py", entrypoint_digest="sha256:ab12",
        args=["--checkpoint", "s3a://ckpt/dev/host-metrics/events", "--trigger", "10 seconds"],
        conf={"spark.sql.shuffle.partitions": "4"}, checkpoint="s3a://ckpt/dev/host-metrics/events",
        strategy="inPlace",
    )
    base.update(kw)
    return StreamingJobResource(**base)


def test_the_spark_application_built_from_a_job() -> None:
    labels = {"app.kubernetes.io/managed-by": "pipectl", "pipectl.dev/stage": "dev",
              "pipectl.dev/job": "dev-host-metrics-events", "pipectl.dev/version": "1.1.0",
              "pipectl.dev/release": "host-metrics"}
    app = spark_application(job(), SETTINGS, "dev", now=NOW)
    meta = app.pop("metadata")
    assert (app["apiVersion"], app["kind"]) == ("sparkoperator.k8s.io/v1beta2", "SparkApplication")
    assert (meta["name"], meta["namespace"], meta["labels"]) == ("dev-host-metrics-events", "spark-jobs", labels)
    assert meta["annotations"]["pipectl.dev/checkpoint"] == "s3a://ckpt/dev/host-metrics/events"
    assert meta["annotations"][ANN_STARTED] == "2026-12-05T14:00:00+00:00"
    assert app["spec"] == {
        "type": "Python", "pythonVersion": "3", "mode": "cluster",
        "image": "registry.local/pipectl-jobs:1.2", "sparkVersion": "3.5.5",
        "mainApplicationFile": "local:///opt/repo/jobs/events.py",
        "arguments": ["--checkpoint", "s3a://ckpt/dev/host-metrics/events", "--trigger", "10 seconds"],
        "sparkConf": {"spark.sql.shuffle.partitions": "4"},
        "restartPolicy": {"type": "OnFailure", "onFailureRetries": 4, "onFailureRetryInterval": 10,
                          "onSubmissionFailureRetries": 4, "onSubmissionFailureRetryInterval": 20},
        "driver": {"cores": 2, "memory": "1g", "serviceAccount": "spark", "labels": labels},
        "executor": {"instances": 3, "cores": 1, "memory": "2g", "labels": labels},
    }
    assert spark_application(job(), SETTINGS, "dev", now=NOW) == spark_application(job(), SETTINGS, "dev", now=NOW)


def test_the_record_read_back_is_the_job_that_was_started() -> None:
    j = job()
    rec = job_record(spark_application(j, SETTINGS, "dev", now=NOW))
    assert rec.resource(running=True) == j
    assert rec.started_at == NOW and rec.pid is None
    assert rec.submission_id == "SparkApplication spark-jobs/dev-host-metrics-events"
    assert rec.argv[0] == "local:///opt/repo/jobs/events.py"


def test_an_object_without_the_job_annotation_is_refused_naming_it() -> None:
    app = spark_application(job(), SETTINGS, "dev", now=NOW)
    del app["metadata"]["annotations"]["pipectl.dev/job-spec"]
    with pytest.raises(PermanentBackendError, match="spark-jobs/dev-host-metrics-events: unreadable annotation"):
        job_record(app)


@pytest.mark.parametrize("name", ["dev.telemetry.Host_Metrics", "x" * 120, "prod-a-b-v1-1-0-", "A"])
def test_object_names_are_dns_labels_deterministic_and_distinct(name: str) -> None:
    got = object_name(name)
    assert len(got) <= 63 and got == got.lower() and got[0].isalnum() and got[-1].isalnum()
    assert set(got) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert object_name(name) == got and object_name(name + "x") != got


def test_a_valid_name_is_kept_and_label_values_are_cut_with_their_hash() -> None:
    assert object_name("prod-host-metrics-events-v1-1-0") == "prod-host-metrics-events-v1-1-0"
    assert label_value("1.1.0") == "1.1.0"
    long = label_value("j" * 100)
    assert len(long) == 63 and long.startswith("j" * 54 + "-") and long != label_value("j" * 101)
    assert label_value("1.0.0+build.7") != "1.0.0+build.7"


@pytest.mark.parametrize(("kw", "message"), [
    ({"entrypoint": "../elsewhere/job.py"}, "not a path inside the repository"),
    ({"entrypoint": "/abs/job.py"}, "not a path inside the repository"),
    ({"args": ["--stop-file", "/x"]}, "are the runner's"),
    ({"name": "bad name"}, "invalid job name"),
])
def test_what_the_builder_refuses(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(PermanentBackendError, match=message):
        spark_application(job(**kw), SETTINGS, "dev", now=NOW)


class FakeApi:
    """The runner's ``SparkApplicationApi`` over a dict, with resourceVersion and uid as the server keeps them."""

    def __init__(self) -> None:
        self.objs: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self._n = 0

    def _stamp(self, body: dict[str, Any], uid: str) -> dict[str, Any]:
        self._n += 1
        obj = copy.deepcopy(body)
        obj["metadata"].update(resourceVersion=str(self._n), uid=uid)
        self.objs[obj["metadata"]["name"]] = obj
        return copy.deepcopy(obj)

    def get(self, name: str) -> dict[str, Any] | None:
        self.calls.append(f"get {name}")
        return copy.deepcopy(self.objs.get(name))

    def list(self, label_selector: str) -> list[dict[str, Any]]:
        self.calls.append(f"list {label_selector}")
        key, _, value = label_selector.partition("=")
        return [copy.deepcopy(o) for o in self.objs.values() if o["metadata"]["labels"].get(key) == value]

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(f"create {body['metadata']['name']}")
        assert body["metadata"]["name"] not in self.objs, "AlreadyExists"
        return self._stamp(body, uid=f"uid-{self._n}")

    def replace(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(f"replace {name}")
        assert body["metadata"]["resourceVersion"] == self.objs[name]["metadata"]["resourceVersion"]
        obj = self._stamp(body, uid=self.objs[name]["metadata"]["uid"])
        return obj

    def delete(self, name: str) -> bool:
        self.calls.append(f"delete {name}")
        return self.objs.pop(name, None) is not None

    def set_state(self, name: str, state: str) -> None:
        self.objs[name]["status"] = {"applicationState": {"state": state}}


NAME = "dev-host-metrics-events"


def test_a_second_runner_updates_the_object_instead_of_creating_another() -> None:
    api = FakeApi()
    first = SparkOperatorRunner(api, SETTINGS, "dev").start(job())
    assert first.alive and first.backend_state == ""
    api.set_state(NAME, "RUNNING")
    again = SparkOperatorRunner(api, SETTINGS, "dev")  # a restarted controller
    assert again.list([NAME])[NAME].alive
    state = again.start(job(conf={"spark.sql.shuffle.partitions": "8"}))
    assert [c.split()[0] for c in api.calls] == ["get", "create", "get", "get", "replace"]
    assert list(api.objs) == [NAME] and api.objs[NAME]["metadata"]["uid"] == "uid-0"
    assert api.objs[NAME]["spec"]["sparkConf"] == {"spark.sql.shuffle.partitions": "8"}
    assert state.record.conf == {"spark.sql.shuffle.partitions": "8"}


@pytest.mark.parametrize("state", ["", "SUBMITTED", "RUNNING", "PENDING_RERUN", "INVALIDATING", "FAILING",
                                   "UNKNOWN", *sorted(ENDED)])
def test_the_operators_state_is_read_back(state: str) -> None:
    api = FakeApi()
    runner = SparkOperatorRunner(api, SETTINGS, "dev")
    runner.start(job())
    api.set_state(NAME, state)
    got = runner.list([NAME])[NAME]
    assert (got.alive, got.backend_state) == (state not in ENDED, state)
    assert runner.list(None) == {NAME: got}


def test_an_ended_application_is_recreated_on_start() -> None:
    api = FakeApi()
    runner = SparkOperatorRunner(api, SETTINGS, "dev")
    runner.start(job())
    api.set_state(NAME, "FAILED")
    assert runner.stop(NAME, 1.0) is False and runner.kill(NAME) is False  # not running
    state = runner.start(job())
    assert api.calls[-3:] == [f"get {NAME}", f"delete {NAME}", f"create {NAME}"]
    assert state.alive and api.objs[NAME]["metadata"]["uid"] != "uid-0"


def test_stop_request_stop_kill_and_forget_delete_the_object() -> None:
    api = FakeApi()
    runner = SparkOperatorRunner(api, SETTINGS, "dev", poll=0.01)
    runner.start(job())
    assert runner.request_stop(NAME, 60) is True and api.objs == {}
    assert runner.request_stop(NAME, 60) is True and runner.list([NAME]) == {}
    runner.start(job())
    assert runner.stop(NAME, 1.0) is True and api.objs == {}
    assert runner.stop(NAME, 1.0) is False
    runner.start(job())
    assert runner.kill(NAME) is True and api.objs == {}
    runner.start(job())
    with pytest.raises(PermanentBackendError, match="is running"):
        runner.forget(NAME)
    api.set_state(NAME, "COMPLETED")
    assert runner.forget(NAME) is True and api.objs == {} and runner.forget(NAME) is False


def test_the_wiring_picks_the_operator_runner_for_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = {  # connecting builds a client only: no request is made here
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }
    (tmp_path / "kubeconfig").write_text(json.dumps(kubeconfig))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    env = SparkEndpoint(runner="sparkOperator", spark_operator=SETTINGS)
    runner = spark_runner(tmp_path, tmp_path, env, "staging")
    assert isinstance(runner, SparkOperatorRunner)
    assert (runner.stage, runner.settings) == ("staging", SETTINGS)
    assert isinstance(runner.api, KubeSparkApplications) and runner.api.namespace == "spark-jobs"
