"""A real Kubernetes API server in the stack: ``etcd`` (Debian's etcd-server) and ``kube-apiserver``.

There is no kube-apiserver package for Debian, so ``build_kube_binaries`` builds it (and
``kubectl``) from the Go module proxy: a wrapper module requires ``k8s.io/kubernetes`` and replaces
each ``k8s.io/*`` staging module with its own release (the kubernetes module points them at
``./staging/...``, which a dependency cannot use). The binaries are cached under
``.stack/kube/bin`` and rebuilt only when the version key changes. ``kube:install`` also fetches
the kubeflow spark-operator's SparkApplication CRD the same way (``spark_operator_crd``).

The API server listens on 127.0.0.1 only, authenticates one generated admin token
(``.stack/kube/token.csv``), authorises with RBAC, and signs service-account tokens with a
generated key pair; ``.stack/kube/kubeconfig`` is what tests and kubectl use.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from controller.devstack import probes, procs
from controller.devstack.component import Component
from controller.devstack.install import write_if_changed
from controller.devstack.layout import HOST, Layout, StackError, port

KUBE_VERSION = "1.34.4"
# The staging modules k8s.io/kubernetes v1.34.4 replaces with ./staging/src/k8s.io/<name>; each
# is published as its own module at v0.<minor>.<patch>.
STAGING_MODULES = (
    "api", "apiextensions-apiserver", "apimachinery", "apiserver", "cli-runtime", "client-go",
    "cloud-provider", "cluster-bootstrap", "code-generator", "component-base", "component-helpers",
    "controller-manager", "cri-api", "cri-client", "csi-translation-lib", "dynamic-resource-allocation",
    "endpointslice", "externaljwt", "kms", "kube-aggregator", "kube-controller-manager", "kube-proxy",
    "kube-scheduler", "kubectl", "kubelet", "metrics", "mount-utils", "pod-security-admission",
    "sample-apiserver", "sample-cli-plugin", "sample-controller",
)
KUBE_COMMANDS = ("kube-apiserver", "kubectl")
MIN_GO = (1, 24)  # what k8s.io/kubernetes 1.34 declares
ADMIN_USER = "pipectl-admin"
_GO_FALLBACK = "/usr/local/go/bin/go"  # where the go.dev/dl tarball installs it


def go_mod(version: str = KUBE_VERSION) -> str:
    """The wrapper module's go.mod (go.sum is resolved by ``GOFLAGS=-mod=mod`` on build)."""
    staging = "0." + version.split(".", 1)[1]
    lines = ["module pipectl.local/kubebuild", "", "go 1.24.0", "", f"require k8s.io/kubernetes v{version}",
             "", "replace ("]
    lines += [f"\tk8s.io/{m} => k8s.io/{m} v{staging}" for m in STAGING_MODULES]
    return "\n".join([*lines, ")", ""])


TOOLS_GO = """//go:build tools

// Package kubebuild only pins the commands pipectl's stack builds.
package kubebuild

import (
\t_ "k8s.io/kubernetes/cmd/kube-apiserver"
\t_ "k8s.io/kubernetes/cmd/kubectl"
)
"""


def kube_dir(layout: Layout) -> Path:
    return layout.stack / "kube"


def kube_bin(layout: Layout) -> Path:
    return kube_dir(layout) / "bin"


def find_go() -> str:
    """A Go toolchain new enough for Kubernetes 1.34: PIPECTL_GO, ``go`` on PATH, /usr/local/go."""
    cands = [os.environ.get("PIPECTL_GO", ""), shutil.which("go") or "", _GO_FALLBACK]
    seen = []
    for go in (c for c in cands if c and Path(c).is_file()):
        out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, timeout=30,
                             check=False).stdout.strip()
        m = re.match(r"go(\d+)\.(\d+)", out)
        if m and (int(m.group(1)), int(m.group(2))) >= MIN_GO:
            return go
        seen.append(f"{go} ({out or 'unknown version'})")
    raise StackError(f"Go >= {MIN_GO[0]}.{MIN_GO[1]} is needed to build kube-apiserver and kubectl "
                     f"(found: {', '.join(seen) or 'none'}); install it from https://go.dev/dl/ into "
                     "/usr/local/go or set PIPECTL_GO")


def build_kube_binaries(layout: Layout, say: Any = print) -> Path:
    """kube-apiserver and kubectl under ``.stack/kube/bin``; built only when missing or stale."""
    base, out = kube_dir(layout), kube_bin(layout)
    key = f"k8s.io/kubernetes v{KUBE_VERSION} {' '.join(KUBE_COMMANDS)}"
    marker = out / ".built"
    if marker.exists() and marker.read_text().strip() == key and \
            all((out / c).is_file() for c in KUBE_COMMANDS):
        return out
    go = find_go()
    src = base / "src"
    write_if_changed(src / "go.mod", go_mod())
    write_if_changed(src / "tools.go", TOOLS_GO)
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOMODCACHE": str(base / "gomod"),
           "GOCACHE": str(base / "gocache")}
    log = layout.log("kube-build")
    say(f"kube:install: building {', '.join(KUBE_COMMANDS)} v{KUBE_VERSION} from the Go module proxy "
        f"(several CPU-minutes; log {log})")
    t0, cpu0 = time.monotonic(), os.times()
    out.mkdir(parents=True, exist_ok=True)
    # nice: the build competes with the servers already starting on a small machine.
    procs.run(["nice", "-n", "10", go, "build", "-trimpath", "-ldflags",
               f"-s -w -X k8s.io/component-base/version.gitVersion=v{KUBE_VERSION}", "-o", f"{out}/",
               *(f"k8s.io/kubernetes/cmd/{c}" for c in KUBE_COMMANDS)],
              log=log, env=env, cwd=src, timeout=3600)
    cpu1 = os.times()
    cpu = (cpu1.children_user - cpu0.children_user) + (cpu1.children_system - cpu0.children_system)
    with open(log, "a") as fh:
        fh.write(f"built in {time.monotonic() - t0:.0f} s wall, {cpu:.0f} s CPU\n")
    marker.write_text(key + "\n")
    return out


SPARK_OPERATOR_MODULE = "github.com/kubeflow/spark-operator/v2"
SPARK_OPERATOR_VERSION = "v2.3.0"
SPARK_OPERATOR_CRD = "charts/spark-operator-chart/crds/sparkoperator.k8s.io_sparkapplications.yaml"


def spark_operator_crd_path(layout: Layout) -> Path:
    crds = kube_dir(layout) / "crds"
    return crds / f"spark-operator-{SPARK_OPERATOR_VERSION}" / Path(SPARK_OPERATOR_CRD).name


def spark_operator_crd(layout: Layout, say: Any = print) -> Path:
    """The kubeflow spark-operator's SparkApplication CRD (for the ``SparkOperatorRunner`` tests),
    copied from its module fetched through the Go module proxy (``go mod download``, cached in
    ``.stack/kube/gomod``). Not vendored: it is ~800 KB of generated schema."""
    dest = spark_operator_crd_path(layout)
    if dest.is_file():
        return dest
    go = find_go()
    mod = f"{SPARK_OPERATOR_MODULE}@{SPARK_OPERATOR_VERSION}"
    say(f"kube:install: fetching the SparkApplication CRD from {mod}")
    env = {**os.environ, "GOMODCACHE": str(kube_dir(layout) / "gomod"), "GO111MODULE": "on"}
    env.pop("GOFLAGS", None)  # -mod=… is refused outside a module
    kube_dir(layout).mkdir(parents=True, exist_ok=True)
    out = subprocess.run([go, "mod", "download", "-json", mod], capture_output=True, text=True, env=env,
                         cwd=kube_dir(layout), timeout=600, check=False)
    try:
        info = json.loads(out.stdout)
    except ValueError:
        info = {}
    if out.returncode != 0 or info.get("Error") or not info.get("Dir"):
        raise StackError(f"go mod download {mod} failed: {info.get('Error') or out.stderr.strip()[-400:]}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    tmp.write_bytes((Path(info["Dir"]) / SPARK_OPERATOR_CRD).read_bytes())
    tmp.replace(dest)
    return dest


def install_kube(layout: Layout, say: Any = print) -> str:
    """``kube:install``: the binaries and the spark-operator CRD, each only when missing."""
    return f"{build_kube_binaries(layout, say)}; {spark_operator_crd(layout, say)}"


def _sa_keypair(pki: Path) -> tuple[Path, Path]:
    """The service-account signing key (RSA 2048, PEM) and its public half, made once with the
    openssl command (the devstack package uses the standard library only)."""
    key, pub = pki / "sa.key", pki / "sa.pub"
    if key.exists() and pub.exists():
        return key, pub
    pki.mkdir(parents=True, exist_ok=True)
    tmp = pki / "sa.key.tmp"
    procs.run(["openssl", "genrsa", "-out", str(tmp), "2048"], timeout=60)
    tmp.chmod(0o600)
    procs.run(["openssl", "rsa", "-in", str(tmp), "-pubout", "-out", str(pub)], timeout=60)
    tmp.replace(key)
    return key, pub


class Etcd(Component):
    name = "etcd"
    timeout = 60.0

    @property
    def data(self) -> Path:
        return self.layout.stack / "etcd" / "data"

    def version(self) -> str:
        try:
            out = subprocess.run(["etcd", "--version"], capture_output=True, text=True, timeout=10,
                                 check=False).stdout
        except OSError:
            return ""
        m = re.search(r"etcd Version: (\S+)", out)
        return m.group(1) if m else ""

    def prepare(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        self.data.chmod(0o700)

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        client, peer = f"http://{HOST}:{self.port}", f"http://{HOST}:{port('etcd_peer')}"
        argv = ["etcd", "--name", "pipectl", "--data-dir", str(self.data),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"pipectl={peer}", "--listen-metrics-urls", "",
                "--auto-compaction-retention", "1h", "--quota-backend-bytes", str(512 * 2**20)]
        return argv, self.ctx.base_env(), self.data.parent

    def check(self) -> str:
        status, body = probes.http_json(f"http://{HOST}:{self.port}/health")
        if status != 200 or not isinstance(body, dict) or body.get("health") != "true":
            raise probes.ProbeError(f"/health -> {status} {body}")
        return "health true"


class KubeApiserver(Component):
    name = "kube-apiserver"
    port_name = "kube_apiserver"
    deps = ("etcd",)
    installs = ("kube:install",)
    timeout = 120.0

    @property
    def base(self) -> Path:
        return kube_dir(self.layout)

    @property
    def kubeconfig(self) -> Path:
        return self.base / "kubeconfig"

    @property
    def serving_cert(self) -> Path:
        return self.base / "certs" / "apiserver.crt"

    @property
    def binary(self) -> Path:
        return kube_bin(self.layout) / "kube-apiserver"

    def version(self) -> str:
        return f"{KUBE_VERSION}" if self.binary.exists() else ""

    def token(self) -> str:
        f = self.base / "admin.token"
        if not f.exists():
            write_if_changed(f, secrets.token_hex(24) + "\n", mode=0o600)
        return f.read_text().strip()

    def prepare(self) -> None:
        line = f'{self.token()},{ADMIN_USER},{ADMIN_USER},"system:masters"\n'
        write_if_changed(self.base / "token.csv", line, mode=0o600)
        _sa_keypair(self.base / "pki")
        (self.base / "certs").mkdir(parents=True, exist_ok=True)

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        key, pub = _sa_keypair(self.base / "pki")
        argv = [str(self.binary), f"--etcd-servers=http://{HOST}:{port('etcd')}",
                f"--bind-address={HOST}", f"--advertise-address={HOST}", f"--secure-port={self.port}",
                f"--cert-dir={self.base / 'certs'}", f"--token-auth-file={self.base / 'token.csv'}",
                "--authorization-mode=RBAC", f"--service-account-key-file={pub}",
                f"--service-account-signing-key-file={key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--service-cluster-ip-range=10.96.0.0/24",
                # No node can hold the "kubernetes" Service's endpoints on a loopback-only server.
                "--endpoint-reconciler-type=none"]
        return argv, self.ctx.base_env(), self.base

    def _get(self, path: str) -> tuple[int, str]:
        ctx = ssl.create_default_context(cafile=str(self.serving_cert))
        req = urllib.request.Request(f"https://{HOST}:{self.port}{path}",
                                     headers={"Authorization": f"Bearer {self.token()}"})
        try:
            with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:  # noqa: S310
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def check(self) -> str:
        if not self.serving_cert.exists():
            raise probes.ProbeError(f"no serving certificate yet at {self.serving_cert}")
        status, body = self._get("/readyz")
        if status != 200:
            raise probes.ProbeError(f"/readyz -> {status} {body.strip()[-200:]}")
        status, body = self._get("/version")
        version = json.loads(body).get("gitVersion", "?") if status == 200 else f"HTTP {status}"
        return f"readyz ok, {version}"

    def after_healthy(self) -> None:
        import base64

        ca = base64.b64encode(self.serving_cert.read_bytes()).decode()
        cfg = {
            "apiVersion": "v1", "kind": "Config", "current-context": "pipectl-stack",
            "clusters": [{"name": "pipectl-stack", "cluster": {
                "server": f"https://{HOST}:{self.port}", "certificate-authority-data": ca}}],
            "users": [{"name": ADMIN_USER, "user": {"token": self.token()}}],
            "contexts": [{"name": "pipectl-stack", "context": {"cluster": "pipectl-stack",
                                                               "user": ADMIN_USER}}],
        }
        # JSON is YAML: kubectl and the kubernetes client read it as a kubeconfig.
        write_if_changed(self.kubeconfig, json.dumps(cfg, indent=1) + "\n", mode=0o600)

    def info(self) -> dict[str, Any]:
        return {"url": f"https://{HOST}:{self.port}", "kubeconfig": str(self.kubeconfig),
                "kubectl": str(kube_bin(self.layout) / "kubectl")}


__all__ = ["Etcd", "KubeApiserver", "build_kube_binaries", "go_mod", "install_kube", "spark_operator_crd"]
