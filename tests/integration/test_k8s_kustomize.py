"""The kustomize base (manifests/platform/kubernetes) against the stack's real kube-apiserver:
plain ``kubectl apply -k`` (no --load-restrictor flag) passes a server-side dry run, then applies
for real and every object exists (the Deployment runs no pods: the stack has no nodes). A server
dry run persists nothing, so the namespaced objects' dry run needs the namespace to exist already:
the test creates it first (on a fresh cluster the real ``apply -k`` creates it before the rest).

Then the RBAC is exercised, not read: with a token of the Deployment's service account
(TokenRequest), the project's LeaseElector takes and renews the Lease the Deployment names and the
StatusMirror patches a PipelineRelease's status, and what ``--source kubernetes`` needs works
(``KubeApi``: list the objects in its namespace, create an Event about one); the same account is
refused another Lease, writing the object's spec, listing in another namespace, and Secrets.
"""

from __future__ import annotations

import uuid

import pytest
import yaml
from kubekit import ROOT, Kube, connect
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.adapters.kube import KubeApi
from controller.engine.k8s_status import GROUP, PLURAL, VERSION, StatusMirror
from controller.engine.leader_lease import LeaseElector

BASE = "manifests/platform/kubernetes"
NS = "pipectl"
SA = "pipectl-controller"


@pytest.fixture(scope="module")
def applied() -> Kube:
    kube = connect()
    kube.ensure_namespace(NS)
    dry = kube.kubectl("apply", "-k", BASE, "--dry-run=server")
    lines = dry.stdout.splitlines()
    objects = [d for d in yaml.safe_load_all(kube.kubectl("kustomize", BASE).stdout) if d]
    assert len(lines) == len(objects) and all(line.endswith("(server dry run)") for line in lines), dry.stdout
    assert "deployment.apps/pipectl-controller" in dry.stdout
    kube.kubectl("apply", "-k", BASE)
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/pipelinereleases.pipectl.dev")
    return kube


def test_apply_k_creates_every_object_of_the_base(applied: Kube) -> None:
    built = applied.kubectl("kustomize", BASE).stdout
    objs = [d for d in yaml.safe_load_all(built) if d]
    assert {d["kind"] for d in objs} >= {"Namespace", "CustomResourceDefinition", "ServiceAccount", "Role",
                                         "RoleBinding", "Deployment", "Service"}
    for d in objs:
        ns = ["-n", d["metadata"]["namespace"]] if d["metadata"].get("namespace") else []
        got = applied.kubectl("get", d["kind"].lower(), d["metadata"]["name"], *ns,
                              "-o", "jsonpath={.metadata.labels.app\\.kubernetes\\.io/part-of}").stdout
        assert got == "pipectl", d["kind"]
    dep = client.AppsV1Api(applied.api).read_namespaced_deployment("pipectl-controller", NS)
    assert dep.spec.template.spec.service_account_name == SA


def _sa_client(kube: Kube) -> client.ApiClient:
    token = kube.kubectl("create", "token", SA, "-n", NS, "--duration=10m").stdout.strip()
    return kube.client_with_token(token)


def _lease_name() -> str:
    dep = yaml.safe_load((ROOT / BASE / "deployment.yaml").read_text())
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    return str(env["PIPECTL_LEASE_NAME"]["value"])


def test_the_service_account_may_do_what_the_controller_does(applied: Kube) -> None:
    sa = _sa_client(applied)
    lease = _lease_name()
    applied.kubectl("delete", "lease", lease, "-n", NS, "--ignore-not-found")
    elector = LeaseElector(lease, NS, "pod-a", 15, api=client.CoordinationV1Api(sa))
    assert elector.acquire() is True  # create
    assert elector.renew() is True  # get + update
    elector.release()
    assert elector.acquire() is True
    elector.release()

    name = f"rbac-{uuid.uuid4().hex[:6]}"
    doc = yaml.safe_load((ROOT / "manifests" / "releases" / "host-metrics.yaml").read_text())
    doc["metadata"]["name"] = name
    applied.kubectl("apply", "-n", NS, "-f", "-", stdin=yaml.safe_dump(doc))
    try:
        assert StatusMirror(client.CustomObjectsApi(sa), NS).patch_status(name, {"phase": "Succeeded"})
        row = applied.kubectl("get", "pipelinereleases", "-n", NS, name, "--no-headers").stdout.split()
        assert row[0] == name and "Succeeded" in row
        kube_api = KubeApi(sa, [NS])  # --source kubernetes --namespace pipectl
        listed = kube_api.list_releases()
        assert name in [o["metadata"]["name"] for o in listed]
        uid = next(o["metadata"]["uid"] for o in listed if o["metadata"]["name"] == name)
        kube_api.create_event(NS, name, uid, "Normal", "Promoted", "1.0.0 succeeded at stage dev")
        events = applied.kubectl("get", "events", "-n", NS, "--field-selector",
                                 f"involvedObject.name={name}", "-o", "name").stdout.split()
        assert len(events) == 1, events
    finally:
        applied.kubectl("delete", "pipelinerelease", "-n", NS, name, "--wait=false")


def _forbidden(call: object) -> None:
    with pytest.raises(ApiException) as e:
        call()  # type: ignore[operator]
    assert e.value.status == 403, e.value


def test_the_service_account_may_do_nothing_more(applied: Kube) -> None:
    sa = _sa_client(applied)
    coord, custom, core = client.CoordinationV1Api(sa), client.CustomObjectsApi(sa), client.CoreV1Api(sa)
    other = f"other-{uuid.uuid4().hex[:6]}"
    applied.kubectl("create", "-n", NS, "-f", "-", stdin=yaml.safe_dump({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": other, "namespace": NS}, "spec": {"holderIdentity": "x"}}))
    _forbidden(lambda: coord.read_namespaced_lease(other, NS))
    # A candidate for a Lease it has no grant on never leads.
    assert LeaseElector(other, NS, "pod-a", 15, api=coord).acquire() is False
    _forbidden(lambda: custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL))
    # patch is granted for the pipectl.dev/prune finalizer (RBAC cannot narrow a patch to one
    # field); replacing, creating or deleting an object is not.
    _forbidden(lambda: custom.replace_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, other, {"spec": {"version": "9"}}))
    _forbidden(lambda: custom.create_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, {"apiVersion": f"{GROUP}/{VERSION}", "kind": "PipelineRelease",
                                     "metadata": {"name": other}, "spec": {"version": "9"}}))
    _forbidden(lambda: custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, other))
    _forbidden(lambda: custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, other, {"metadata": {"finalizers": []}}))
    _forbidden(lambda: core.list_namespaced_secret(NS))
    _forbidden(lambda: core.create_namespaced_event("default", client.CoreV1Event(
        metadata=client.V1ObjectMeta(name=other), involved_object=client.V1ObjectReference(name="x"))))
    _forbidden(lambda: coord.read_namespaced_lease(_lease_name(), "default"))
