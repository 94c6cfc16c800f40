"""The local stack's Kubernetes API server, offline: the wrapper Go module that builds
kube-apiserver and kubectl, the build cache, and the command lines of etcd and kube-apiserver
(loopback only, token authentication, RBAC, a service-account key pair, state under .stack/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.devstack import kube
from controller.devstack.component import Context
from controller.devstack.layout import Layout, StackError


def _ctx(tmp_path: Path) -> Context:
    return Context(layout=Layout(tmp_path), java_home=Path("/usr"), spark_home=tmp_path, spark_version="3.5.9",
                   python="python3", pg_bin=None)


def test_go_mod_requires_kubernetes_and_pins_every_staging_module() -> None:
    text = kube.go_mod()
    assert "require k8s.io/kubernetes v1.34.4" in text
    replaces = [line.split() for line in text.splitlines() if "=>" in line]
    assert len(replaces) == len(kube.STAGING_MODULES) == 31
    for old, _, new, version in replaces:
        assert old == new and old.startswith("k8s.io/") and version == "v0.34.4"
    assert {"k8s.io/apiserver", "k8s.io/client-go", "k8s.io/kubectl"} <= {r[0] for r in replaces}
    assert "cmd/kube-apiserver" in kube.TOOLS_GO and "cmd/kubectl" in kube.TOOLS_GO


def test_build_is_skipped_when_the_binaries_are_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = Layout(tmp_path)
    out = kube.kube_bin(layout)
    out.mkdir(parents=True)
    for c in kube.KUBE_COMMANDS:
        (out / c).write_text("")
    (out / ".built").write_text(f"k8s.io/kubernetes v{kube.KUBE_VERSION} {' '.join(kube.KUBE_COMMANDS)}\n")

    def no_go() -> str:
        raise AssertionError("Go must not be needed when the binaries are cached")

    monkeypatch.setattr(kube, "find_go", no_go)
    assert kube.build_kube_binaries(layout, say=lambda _m: None) == out
    # another version's binaries are rebuilt
    (out / ".built").write_text("k8s.io/kubernetes v1.33.0 kube-apiserver kubectl\n")
    monkeypatch.setattr(kube, "find_go", lambda: (_ for _ in ()).throw(StackError("no go")))
    with pytest.raises(StackError, match="no go"):
        kube.build_kube_binaries(layout, say=lambda _m: None)


def test_without_a_new_enough_go_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPECTL_GO", "/nonexistent/go")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(kube, "_GO_FALLBACK", "/nonexistent/usr-local-go")
    with pytest.raises(StackError, match=r"Go >= 1\.24 is needed .*go\.dev/dl"):
        kube.find_go()


def test_etcd_listens_on_loopback_only(tmp_path: Path) -> None:
    argv, _, _ = kube.Etcd(_ctx(tmp_path)).command()
    urls = [argv[i + 1] for i, a in enumerate(argv) if a.endswith("-urls") and argv[i + 1]]
    assert urls and all(u.startswith("http://127.0.0.1:") for u in urls)
    assert argv[argv.index("--data-dir") + 1].startswith(str(tmp_path / ".stack"))


def test_apiserver_flags(tmp_path: Path) -> None:
    comp = kube.KubeApiserver(_ctx(tmp_path))
    comp.prepare()
    argv, _, _ = comp.command()
    flags = dict(a.removeprefix("--").split("=", 1) for a in argv[1:])
    assert argv[0] == str(tmp_path / ".stack" / "kube" / "bin" / "kube-apiserver")
    assert flags["bind-address"] == "127.0.0.1" and flags["secure-port"] == str(comp.port)
    assert flags["authorization-mode"] == "RBAC"
    assert flags["etcd-servers"].startswith("http://127.0.0.1:")
    for f in ("cert-dir", "token-auth-file", "service-account-key-file", "service-account-signing-key-file"):
        assert Path(flags[f]).is_relative_to(tmp_path / ".stack"), f
    assert Path(flags["service-account-signing-key-file"]).read_text().startswith("-----BEGIN")
    assert "PUBLIC KEY" in Path(flags["service-account-key-file"]).read_text()
    token, user, _, groups = Path(flags["token-auth-file"]).read_text().strip().split(",")
    assert token == comp.token() and user == kube.ADMIN_USER and groups == '"system:masters"'
    assert (Path(flags["token-auth-file"]).stat().st_mode & 0o077) == 0
