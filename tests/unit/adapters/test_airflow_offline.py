"""Airflow adapter pieces that need no server: the folder deployer, the sidecar convention, error mapping."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from airflow_client.client.exceptions import ApiException

from controller.adapters.airflow import (
    AirflowAdapter,
    LocalFolderDeployer,
    _wrap,
    id_pattern,
    meta_file_name,
    render_meta,
    tag_value,
)
from controller.model.errors import ConflictError, PermanentBackendError, TransientBackendError
from controller.plan.actions import Action, Op
from controller.plan.desired import digest
from controller.plan.resources import DagResource, Owner, ResourceKind


def _dag(version: str = "1.0.0") -> DagResource:
    src = "print('dag')\n"
    return DagResource(
        name="daily__dev", owner=Owner(release="host-metrics", version=version), file_name="daily__dev.py",
        source_digest=digest(src.encode()), version=version, source=src,
    )


def test_deployer_writes_atomically_and_reports_digest(tmp_path: Path) -> None:
    dep = LocalFolderDeployer(tmp_path / "dags")
    assert dep.read_digest("a.py") is None
    dep.deploy("a.py", "x = 1\n")
    assert (tmp_path / "dags" / "a.py").read_text() == "x = 1\n"
    assert dep.read_digest("a.py") == digest(b"x = 1\n")
    dep.deploy("a.py", "x = 2\n")
    assert dep.read_digest("a.py") == digest(b"x = 2\n")
    assert sorted(os.listdir(tmp_path / "dags")) == ["a.py"], "no temp files left behind"
    assert (tmp_path / "dags" / "a.py").stat().st_mode & 0o777 == 0o644
    dep.remove("a.py")
    dep.remove("a.py")
    assert dep.read_digest("a.py") is None


@pytest.mark.parametrize("bad", ["../evil.py", "sub/a.py", "/abs.py", "", ".hidden.py"])
def test_deployer_rejects_paths(tmp_path: Path, bad: str) -> None:
    with pytest.raises(PermanentBackendError):
        LocalFolderDeployer(tmp_path).deploy(bad, "x")


def test_sidecar_matches_what_the_dag_file_reads() -> None:
    assert meta_file_name("daily__dev.py") == Path("/dags/daily__dev.py").with_suffix(".pipectl.json").name
    meta = json.loads(render_meta(_dag()))
    assert meta == {
        "dag_id": "daily__dev", "release": "host-metrics", "version": "1.0.0",
        "tags": ["pipectl", "release:host-metrics", "version:1.0.0", f"source:{_dag().source_digest[7:19]}"],
    }
    assert _dag().source_digest.startswith("sha256:")
    assert render_meta(_dag()) == render_meta(_dag()), "deterministic"
    assert tag_value(meta["tags"], "version") == "1.0.0"
    assert tag_value(meta["tags"], "release") == "host-metrics"
    assert tag_value(["pipectl"], "version") is None


def test_id_pattern() -> None:
    assert id_pattern(["a__dev"]) == "a__dev"
    assert id_pattern(["a__dev", "bb__dev"]) == "__dev"
    assert id_pattern(["metrics_a__dev", "metrics_b__prod"]) == "metrics_"
    assert id_pattern(["a", "b"]) is None
    assert id_pattern([]) is None


@pytest.mark.parametrize(
    ("status", "err"),
    [(409, ConflictError), (503, TransientBackendError), (429, TransientBackendError),
     (403, PermanentBackendError), (400, PermanentBackendError)],
)
def test_error_mapping(status: int, err: type[Exception]) -> None:
    assert isinstance(_wrap("get_dag", ApiException(status=status, reason="x")), err)


def test_refused_action_is_not_applied(tmp_path: Path) -> None:
    adapter = AirflowAdapter("http://127.0.0.1:1", "u", "p", LocalFolderDeployer(tmp_path))
    refuse = Action(op=Op.REFUSE, kind=ResourceKind.DAG, name="daily__dev", reason="no", desired=_dag())
    with pytest.raises(PermanentBackendError, match="refused"):
        adapter.apply(refuse)
    assert adapter.stats.total == 0
    assert list(tmp_path.iterdir()) == []
