"""``SparkOperatorRunner`` (controller/adapters/spark_operator.py) against the stack's real
kube-apiserver with the kubeflow spark-operator's SparkApplication CRD (v2.3.0, fetched by
``kube:install``; ``controller.devstack.kube.spark_operator_crd``) applied:

- a job's start creates a SparkApplication the server accepts under the CRD's schema, with
  ``fieldValidation=Strict`` (a field the CRD lacks, or a wrong type, is refused, not dropped);
- a second start from a new runner (a restarted controller, built by ``wiring.spark_runner`` from
  the Environment's ``runner: sparkOperator``) updates that object: same uid, one object per job;
- a status written to the status subresource as the operator writes it is read back: RUNNING
  alive, FAILED not; a start after FAILED recreates the object;
- stop deletes it.

No operator runs here and the stack has no nodes: nothing submits a driver (docs/architecture.md §2).
"""

from __future__ import annotations

import copy
import time
import uuid
from pathlib import Path
from typing import Any, cast

import pytest
from kubekit import ROOT, Kube, connect
from kubernetes import client

from controller.adapters.spark import SparkAdapter
from controller.adapters.spark_operator import (
    GROUP,
    PLURAL,
    VERSION,
    KubeSparkApplications,
    SparkOperatorRunner,
    object_name,
    spark_application,
)
from controller.devstack.kube import spark_operator_crd
from controller.devstack.layout import Layout
from controller.model.endpoints import SparkEndpoint
from controller.model.errors import PermanentBackendError
from controller.plan.resources import Owner, StreamingJobResource
from controller.wiring import spark_runner

CRD_NAME = f"{PLURAL}.{GROUP}"


@pytest.fixture(scope="module")
def kube() -> Kube:
    k = connect()
    crd = spark_operator_crd(Layout(ROOT))  # kube:install fetched it; a stack from before fetches it now
    # Server-side: the CRD is too large for client-side apply's last-applied annotation (256 KiB).
    k.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    # Polled: kubectl wait fails at once on a CRD the server has not given conditions yet.
    deadline = time.monotonic() + 60
    while not any(c.type == "Established" and c.status == "True" for c in
                  client.ApiextensionsV1Api(k.api).read_custom_resource_definition(CRD_NAME).status.conditions or []):
        assert time.monotonic() < deadline, f"{CRD_NAME} not Established after 60 s"
        time.sleep(0.2)
    return k


@pytest.fixture(scope="module")
def ns(kube: Kube) -> str:
    return kube.ensure_namespace()


def environment(ns: str) -> SparkEndpoint:
    return SparkEndpoint.model_validate({
        "runner": "sparkOperator", "conf": {"spark.sql.session.timeZone": "UTC"},
        "sparkOperator": {"namespace": ns, "image": "registry.local/pipectl-jobs:0.1.0", "serviceAccount": "spark",
                          "sparkVersion": "3.5.5", "executor": {"instances": 2}},
    })


def job(name: str, conf: dict[str, str]) -> StreamingJobResource:
    return StreamingJobResource(
        name=name, owner=Owner(release="host-metrics", version="1.0.0"), version="1.0.0",
        entrypoint="jobs/host_metrics_agg.py", entrypoint_digest="sha256:0",
        args=["--checkpoint", "s3a://ckpt/dev/host-metrics/agg", "--trigger", "10 seconds"],
        conf=conf, checkpoint="s3a://ckpt/dev/host-metrics/agg",
    )


def set_status(custom: client.CustomObjectsApi, ns: str, name: str, state: dict[str, Any]) -> None:
    """What the operator does: write ``status`` through the status subresource (the CRD requires
    ``driverInfo`` in it)."""
    status = {"applicationState": state, "driverInfo": {"podName": f"{name}-driver"}}
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, PLURAL, name, [{"op": "add", "path": "/status", "value": status}],
        _content_type="application/json-patch+json",
    )


def objects(custom: client.CustomObjectsApi, ns: str, job_name: str) -> list[dict[str, Any]]:
    """The SparkApplications labelled with the job."""
    out = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, label_selector=f"pipectl.dev/job={job_name}")
    return list(cast(dict[str, Any], out)["items"])


def test_spark_application_runner_on_the_real_api_server(
    kube: Kube, ns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    custom = client.CustomObjectsApi(kube.api)
    name = f"dev-host-metrics-agg-{uuid.uuid4().hex[:6]}"
    obj_name = object_name(name)
    env = environment(ns)
    assert env.spark_operator is not None
    first = SparkOperatorRunner(KubeSparkApplications(kube.api, ns), env.spark_operator, "dev")
    try:
        started = first.start(job(name, {"spark.sql.session.timeZone": "UTC"}))
        assert started.alive and started.backend_state == ""
        obj = cast(dict[str, Any], custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, obj_name))
        uid = obj["metadata"]["uid"]
        assert obj["spec"]["type"] == "Python" and obj["spec"]["mode"] == "cluster"
        assert obj["spec"]["mainApplicationFile"] == "local:///opt/pipectl/repo/jobs/host_metrics_agg.py"
        assert obj["spec"]["restartPolicy"]["type"] == "OnFailure"
        assert obj["spec"]["executor"]["instances"] == 2 and obj["spec"]["driver"]["serviceAccount"] == "spark"
        assert obj["metadata"]["labels"]["pipectl.dev/stage"] == "dev"

        # The CRD's schema is enforced by the server: a wrong type and an unknown field are refused.
        body = spark_application(job(name + "-x", {}), env.spark_operator, "dev", now=started.record.started_at)
        wrong_type, unknown = copy.deepcopy(body), copy.deepcopy(body)
        wrong_type["spec"]["driver"]["cores"] = "two"
        unknown["spec"]["driver"]["coresPerPod"] = 2
        for bad, why in ((wrong_type, "HTTP 422"), (unknown, "HTTP 400 .*coresPerPod")):
            with pytest.raises(PermanentBackendError, match=why):
                KubeSparkApplications(kube.api, ns).create(bad)

        # A restarted controller: its runner comes from the Environment through the wiring.
        monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
        second = spark_runner(tmp_path, tmp_path, env, "dev")
        assert isinstance(second, SparkOperatorRunner)
        assert SparkAdapter(second).observe_all()[name].running
        second.start(job(name, {"spark.sql.session.timeZone": "UTC", "spark.sql.shuffle.partitions": "4"}))
        listed = objects(custom, ns, name)
        assert [o["metadata"]["uid"] for o in listed] == [uid]
        assert listed[0]["spec"]["sparkConf"]["spark.sql.shuffle.partitions"] == "4"
        assert listed[0]["metadata"]["generation"] == 2

        set_status(custom, ns, obj_name, {"state": "RUNNING"})
        got = second.list([name])[name]
        assert (got.alive, got.backend_state) == (True, "RUNNING")
        set_status(custom, ns, obj_name, {"state": "FAILED", "errorMessage": "driver container failed"})
        got = second.list([name])[name]
        assert (got.alive, got.backend_state) == (False, "FAILED")
        assert not SparkAdapter(second).observe_all()[name].running

        again = second.start(job(name, {"spark.sql.session.timeZone": "UTC"}))  # ended: a new object
        assert again.alive and again.backend_state == ""
        listed = objects(custom, ns, name)
        assert len(listed) == 1 and listed[0]["metadata"]["uid"] != uid

        assert second.stop(name, timeout=10) is True
        assert second.list([name]) == {} and name not in second.list(None)
        assert second.stop(name, timeout=10) is False
    finally:
        KubeSparkApplications(kube.api, ns).delete(obj_name)
