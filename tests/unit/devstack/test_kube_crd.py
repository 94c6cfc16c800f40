"""The spark-operator CRD of the stack (``kube.spark_operator_crd``), offline: copied from the module
``go mod download -json`` reports, fetched once, and a failed download names the module and the
proxy's error. The real fetch runs in ``kube:install``; the CRD is used by
tests/integration/test_spark_operator.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.devstack import kube
from controller.devstack.layout import Layout, StackError


def fake_go(tmp_path: Path, answer: dict[str, str], code: int = 0) -> Path:
    go = tmp_path / "go"
    go.write_text(f"#!/bin/sh\necho \"$*\" >> {tmp_path}/go.calls\ncat <<'EOF'\n{json.dumps(answer)}\nEOF\n"
                  f"exit {code}\n")
    go.chmod(0o755)
    return go


def test_the_crd_is_copied_from_the_downloaded_module_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = tmp_path / "mod"
    (mod / kube.SPARK_OPERATOR_CRD).parent.mkdir(parents=True)
    (mod / kube.SPARK_OPERATOR_CRD).write_text("kind: CustomResourceDefinition\n")
    monkeypatch.setattr(kube, "find_go", lambda: str(fake_go(tmp_path, {"Dir": str(mod)})))
    layout = Layout(tmp_path / "root")
    got = kube.spark_operator_crd(layout, say=lambda _m: None)
    assert got == kube.spark_operator_crd_path(layout) and got.read_text() == "kind: CustomResourceDefinition\n"
    assert got.is_relative_to(layout.stack / "kube") and "v2.3.0" in str(got)
    assert (tmp_path / "go.calls").read_text() == "mod download -json github.com/kubeflow/spark-operator/v2@v2.3.0\n"
    monkeypatch.setattr(kube, "find_go", lambda: (_ for _ in ()).throw(AssertionError("fetched twice")))
    assert kube.spark_operator_crd(layout, say=lambda _m: None) == got


def test_a_failed_download_says_which_module_and_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    go = fake_go(tmp_path, {"Error": "410 Gone"}, code=1)
    monkeypatch.setattr(kube, "find_go", lambda: str(go))
    with pytest.raises(StackError, match=r"go mod download github.com/kubeflow/spark-operator/v2@v2.3.0 failed: 410 Gone"):
        kube.spark_operator_crd(Layout(tmp_path), say=lambda _m: None)
    assert not kube.spark_operator_crd_path(Layout(tmp_path)).exists()
