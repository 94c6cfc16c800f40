"""The controller image's Dockerfile (manifests/platform/kubernetes/Dockerfile) agrees with the
Deployment that runs it and with the repository: every file it copies exists, it runs as the
Deployment's non-root user, and every directory the controller writes is a volume the Deployment
mounts (the root file system is read-only). The image itself is not built here (no registry)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "manifests" / "platform" / "kubernetes"
DOCKERFILE = K8S / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def container_and_pod() -> tuple[dict[str, object], dict[str, object]]:
    (dep,) = [d for d in yaml.safe_load_all((K8S / "deployment.yaml").read_text()) if d]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    return c, pod


def test_every_copied_path_exists_in_the_repository() -> None:
    copies = [rest.split() for op, rest in instructions() if op == "COPY" and not rest.startswith("--from")]
    assert copies
    for args in copies:
        for src in args[:-1]:
            assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is not in the repository"


def test_runs_as_the_deployments_non_root_user() -> None:
    _, pod = container_and_pod()
    (user,) = [rest for op, rest in instructions() if op == "USER"]
    uid, _, gid = user.partition(":")
    ctx = pod["securityContext"]
    assert isinstance(ctx, dict)
    assert int(uid) == ctx["runAsUser"] != 0 and int(gid) == ctx["runAsGroup"]


def test_writable_directories_are_the_deployments_volumes() -> None:
    c, _ = container_and_pod()
    workdir = [rest for op, rest in instructions() if op == "WORKDIR"][-1]  # the final stage's
    assert workdir == c["workingDir"]
    (volumes,) = [rest for op, rest in instructions() if op == "VOLUME"]
    mounts = {m["mountPath"] for m in c["volumeMounts"]}  # type: ignore[attr-defined]
    assert set(re.findall(r'"([^"]+)"', volumes)) == mounts
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(rest for op, rest in instructions() if op == "ENV")))
    assert env["HOME"] == workdir and env["PYTHONDONTWRITEBYTECODE"] == "1"


def test_entrypoint_and_port_match_the_deployment() -> None:
    c, _ = container_and_pod()
    (entry,) = [rest for op, rest in instructions() if op == "ENTRYPOINT"]
    assert yaml.safe_load(entry) == c["command"]
    (expose,) = [rest for op, rest in instructions() if op == "EXPOSE"]
    assert int(expose) in {p["containerPort"] for p in c["ports"]}  # type: ignore[attr-defined]
    assert c["image"] == "pipectl:0.1.0"
