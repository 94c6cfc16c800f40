"""Kubernetes manifests of the controller: parse, have the right kinds, grant what the code uses,
probe the API port, and keep secrets out of git.

There is no API server here (tests/integration/test_k8s_kustomize.py applies the base to the local
stack's real one); the schema check round-trips each object through the kubernetes
client's typed models, which reject wrong types and drop unknown fields (a typo shows as a
difference).
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "manifests" / "platform" / "kubernetes"
FILES = ["namespace.yaml", "serviceaccount.yaml", "rbac.yaml", "deployment.yaml", "service.yaml"]
API_PORT = 8700

API_VERSIONS = {
    "Namespace": "v1",
    "ServiceAccount": "v1",
    "Service": "v1",
    "Deployment": "apps/v1",
    "Role": "rbac.authorization.k8s.io/v1",
    "RoleBinding": "rbac.authorization.k8s.io/v1",
    "ClusterRole": "rbac.authorization.k8s.io/v1",
    "ClusterRoleBinding": "rbac.authorization.k8s.io/v1",
}
MODELS = {
    "Namespace": client.V1Namespace,
    "ServiceAccount": client.V1ServiceAccount,
    "Service": client.V1Service,
    "Deployment": client.V1Deployment,
    "Role": client.V1Role,
    "RoleBinding": client.V1RoleBinding,
    "ClusterRole": client.V1ClusterRole,
    "ClusterRoleBinding": client.V1ClusterRoleBinding,
}


@functools.cache
def docs() -> list[dict[str, Any]]:
    out = []
    for name in FILES:
        out += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d is not None]
    return out


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in docs() if d["kind"] == kind]


def deployment() -> dict[str, Any]:
    (dep,) = of_kind("Deployment")
    return dep


def container() -> dict[str, Any]:
    (c,) = deployment()["spec"]["template"]["spec"]["containers"]
    return c


def test_every_document_has_apiversion_kind_and_name() -> None:
    for d in docs():
        assert d.get("apiVersion") and d.get("kind"), d
        assert d.get("metadata", {}).get("name"), d
        assert API_VERSIONS[d["kind"]] == d["apiVersion"], d["kind"]
        if d["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert d["metadata"]["namespace"] == "pipectl", d["kind"]


def _strip_none(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _strip_none(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [_strip_none(v) for v in x]
    return x


def test_objects_match_the_kubernetes_schema() -> None:
    api = client.ApiClient()
    for d in docs():
        model = MODELS[d["kind"]].from_dict(d)
        assert api.sanitize_for_serialization(model) == _strip_none(d), (
            f"{d['kind']}: unknown or mistyped field"
        )


def test_kustomization_lists_every_manifest_and_the_crd_base() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kust["kind"] == "Kustomization"
    assert set(kust["resources"]) == {*FILES, "../../../crds"}
    for res in kust["resources"]:
        assert (K8S / res).resolve().exists(), res
    # crds/ is a base of its own (so no LoadRestrictionsNone) listing the generated CRD only
    base = yaml.safe_load((ROOT / "crds" / "kustomization.yaml").read_text())
    assert base["resources"] == ["pipelinerelease.yaml"]
    crd = yaml.safe_load((ROOT / "crds" / "pipelinerelease.yaml").read_text())
    assert crd["spec"]["group"] == "pipectl.dev" and crd["spec"]["names"]["plural"] == "pipelinereleases"


def _rules(kind: str) -> list[dict[str, Any]]:
    return [r for d in of_kind(kind) for r in d["rules"]]


def _grants(rules: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    verbs: set[str] = set()
    for r in rules:
        if group in r["apiGroups"] and resource in r["resources"]:
            verbs |= set(r["verbs"])
    return verbs


def test_rbac_grants_what_the_controller_uses_and_no_more() -> None:
    assert not of_kind("ClusterRole") and not of_kind("ClusterRoleBinding")
    rules = _rules("Role")
    leases = [r for r in rules if r["resources"] == ["leases"]]
    # get/update only on the Lease the Deployment names; create cannot be limited by name
    named = [r for r in leases if r.get("resourceNames")]
    env = {e["name"]: e for e in container()["env"]}
    assert [(r["resourceNames"], sorted(r["verbs"])) for r in named] == [
        ([env["PIPECTL_LEASE_NAME"]["value"]], ["get", "update"])
    ]
    assert [r["verbs"] for r in leases if not r.get("resourceNames")] == [["create"]]
    assert _grants(rules, "pipectl.dev", "pipelinereleases/status") == {"patch"}
    # --source kubernetes: list and watch the objects, patch their finalizers (never their spec),
    # create Events about them
    assert _grants(rules, "pipectl.dev", "pipelinereleases") == {"list", "watch", "patch"}
    assert _grants(rules, "", "events") == {"create"} and not _grants(rules, "events.k8s.io", "events")
    for r in rules:
        assert "*" not in r["verbs"] and "*" not in r["resources"] and "*" not in r["apiGroups"]
    assert not _grants(rules, "", "secrets")


def test_bindings_point_at_the_service_account_the_deployment_uses() -> None:
    (sa,) = of_kind("ServiceAccount")
    assert deployment()["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    roles = {(d["kind"], d["metadata"]["name"]) for d in of_kind("Role") + of_kind("ClusterRole")}
    for b in of_kind("RoleBinding") + of_kind("ClusterRoleBinding"):
        assert (b["roleRef"]["kind"], b["roleRef"]["name"]) in roles
        assert {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "pipectl"} in b[
            "subjects"
        ]


def _port(value: int | str) -> int:
    if isinstance(value, int):
        return value
    (p,) = [p["containerPort"] for p in container()["ports"] if p["name"] == value]
    return int(p)


def test_probes_hit_healthz_and_readyz_on_the_api_port() -> None:
    c = container()
    # a standby answers /healthz 200 and /readyz 503 (controller/api/standby.py): it starts and
    # stays alive without leading, and only the leader is ready
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path, probe
        assert _port(get["port"]) == API_PORT, probe
    assert f"--listen=0.0.0.0:{API_PORT}" in c["args"]


def test_service_exposes_the_api_port_to_the_controller_pods() -> None:
    (svc,) = of_kind("Service")
    (port,) = svc["spec"]["ports"]
    assert port["port"] == API_PORT and _port(port["targetPort"]) == API_PORT
    pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert deployment()["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    # the alert rules select job="pipectl"; a ServiceMonitor names the job after the Service
    assert svc["metadata"]["name"] == "pipectl"


def test_secrets_come_from_secret_refs_never_inline() -> None:
    env = {e["name"]: e for e in container()["env"]}
    for name in ("PIPECTL_WEBHOOK_SECRET", "PIPECTL_AIRFLOW_PASSWORD", "PIPECTL_STATE"):
        assert "value" not in env[name], name
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "pipectl-secrets", name
    assert not of_kind("Secret")
    secretish = re.compile(r"password|token|secret|passwd|credential", re.IGNORECASE)
    for e in container()["env"]:
        if secretish.search(e["name"]):
            assert "value" not in e, e["name"]
    for d in docs():  # the objects, not the comments (which show how to create the Secret)
        text = yaml.safe_dump(d)
        assert not re.search(r"^\s*(data|stringData):", text, re.MULTILINE), d["kind"]
        assert not re.search(r"://[^/\s:@]+:[^@\s/]+@", text), f"{d['kind']}: credentials in a URL"


def test_pod_runs_non_root_read_only_with_writable_state() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    c = container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert "emptyDir" in volumes[mounts[c["workingDir"]]]  # .pipectl/ (state, lock, events) lands here
    assert "emptyDir" in volumes[mounts["/tmp"]]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= c["resources"][kind].keys()


def test_leader_election_and_status_mirror_are_configured() -> None:
    env = {e["name"]: e for e in container()["env"]}
    assert env["PIPECTL_LEADER_ELECTION"]["value"] == "lease"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["PIPECTL_STATUS_MIRROR"]["value"] == "true"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not on PATH")
def test_kustomize_builds() -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S)],  # no --load-restrictor: plain `apply -k` must work
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(out.stdout) if d]
    assert "CustomResourceDefinition" in kinds and "Deployment" in kinds
