"""Helpers for integration tests against the local stack's real kube-apiserver (``devstack up``
starts etcd and kube-apiserver and writes ``.stack/kube/kubeconfig``, an admin token's).

``connect()`` gives a ``Kube``: a ``kubernetes`` ApiClient configured from that kubeconfig, and the
stack's own kubectl with the same kubeconfig. Without the API server the calling test is skipped,
or fails when ``CI``/``PIPECTL_REQUIRE_STACK`` is set (as conftest does for the other backends).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError

from controller.devstack.info import load_stack_info

ROOT = Path(__file__).resolve().parents[2]
# Objects the tests create live here; nothing deletes namespaces: without kube-controller-manager
# a deleted namespace stays Terminating for ever.
TEST_NAMESPACE = "pipectl-it"


@dataclass
class Kube:
    kubeconfig: Path
    kubectl_path: Path
    api: client.ApiClient

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args],
                             input=stdin, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        if check:
            assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}{out.stdout}"
        return out

    def client_with_token(self, token: str) -> client.ApiClient:
        """An ApiClient for the same server, authenticated as someone else (a service account)."""
        cfg = client.Configuration()
        cfg.host = self.api.configuration.host
        cfg.ssl_ca_cert = self.api.configuration.ssl_ca_cert
        cfg.api_key = {"authorization": f"Bearer {token}"}
        return client.ApiClient(cfg)

    def ensure_namespace(self, name: str = TEST_NAMESPACE) -> str:
        out = self.kubectl("get", "namespace", name, check=False)
        if out.returncode != 0:
            self.kubectl("create", "namespace", name)
        return name

    def delete_releases(self, namespace: str, selector: str) -> None:
        """Delete a test's PipelineRelease objects once its controller has stopped: their
        ``pipectl.dev/prune`` finalizer is removed first, else nothing would let them go."""
        names = self.kubectl("get", "pipelinereleases", "-n", namespace, "-l", selector, "-o", "name",
                             check=False).stdout.split()
        for name in names:
            self.kubectl("patch", name, "-n", namespace, "--type=merge", "-p", '{"metadata":{"finalizers":[]}}',
                         check=False)
        if names:
            self.kubectl("delete", *names, "-n", namespace, "--wait=false", check=False)

    def apply_crd(self) -> None:
        self.kubectl("apply", "-f", str(ROOT / "crds" / "pipelinerelease.yaml"))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                     "crd/pipelinereleases.pipectl.dev")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") or os.environ.get("PIPECTL_REQUIRE_STACK"):
        pytest.fail(f"local stack required (CI/PIPECTL_REQUIRE_STACK set) but {reason}", pytrace=False)
    pytest.skip(f"kube-apiserver not running: make stack-up ({reason})")


def connect() -> Kube:
    try:
        entry: dict[str, Any] = load_stack_info(ROOT)["components"].get("kube-apiserver") or {}
    except FileNotFoundError as e:
        _unavailable(str(e))
    kubeconfig = Path(entry.get("kubeconfig") or ROOT / ".stack" / "kube" / "kubeconfig")
    kubectl = Path(entry.get("kubectl") or ROOT / ".stack" / "kube" / "bin" / "kubectl")
    if not kubeconfig.exists() or not kubectl.exists():
        _unavailable(f"{kubeconfig} or {kubectl} missing")
    api = config.new_client_from_config(config_file=str(kubeconfig))
    deadline = time.monotonic() + 30
    while True:  # devstack's own check waits for /readyz; here: it answers our token
        try:
            client.VersionApi(api).get_code()
            return Kube(kubeconfig, kubectl, api)
        except (OSError, ApiException, MaxRetryError) as e:
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() > deadline:
            _unavailable(last)
        time.sleep(1)
