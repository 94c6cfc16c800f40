"""A version's content is immutable once a stage has it: a commit that changes a DAG file under the
same version is refused (Blocked/VersionReused, nothing applied); bumping the version rolls it out."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ctlkit import (
    DAG_SOURCE,
    Ctl,
    cleanup,
    commit,
    commit_files,
    dag_id,
    free_port,
    git,
    make_repo,
    release_yaml,
    status,
    wait_for,
)


@pytest.fixture
def world(tmp_path: Path, stack: dict[str, Any], unique_name: str) -> Iterator[tuple[Ctl, Path, Path, str]]:
    name = f"rc-{unique_name}"
    repo = make_repo(tmp_path, unique_name, name, stack["airflow_dags_folder"], with_dag=True)
    state = tmp_path / "state" / "state.db"
    ctl = Ctl(repo, state, free_port(), tmp_path / "controller.log")
    yield ctl, repo, state, name
    ctl.stop()
    cleanup(stack, unique_name, name)


def _ready(state: Path, name: str) -> dict[str, Any]:
    conds = status(state, name).get("conditions") or []
    return next((c for c in conds if c["type"] == "Ready"), {})


def test_same_version_change_is_refused(world, stack: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    ctl, repo, state, name = world
    deployed = Path(stack["airflow_dags_folder"]) / f"{dag_id(name)}__dev.py"
    ctl.start()
    wait_for(
        lambda: status(state, name).get("stages", {}).get("dev", {}).get("phase") == "Succeeded",
        180, "dev Succeeded for 1.0.0", ctl.log,
    )
    before = hashlib.sha256(deployed.read_bytes()).hexdigest()

    # new DAG code, same version: refused everywhere, nothing applied
    changed = DAG_SOURCE + "\n# new behaviour without a version bump\n"
    commit_files(repo, {"dags/rc_daily.py": changed}, "same version, new DAG code")
    ctl.webhook()
    wait_for(lambda: _ready(state, name).get("reason") == "VersionReused", 60, "VersionReused", ctl.log)
    cond = _ready(state, name)
    assert cond["status"] == "False"
    assert "changed: dags/rc_daily.py" in cond["message"], cond["message"]
    assert "Bump spec.version" in cond["message"]
    st = status(state, name)
    assert st["phase"] == "Blocked"
    assert st["stages"]["dev"]["version"] == "1.0.0" and st["stages"]["dev"]["phase"] == "Succeeded"
    # more passes (the poll interval is 2 s) still change nothing
    time.sleep(6)
    assert _ready(state, name).get("reason") == "VersionReused"
    assert hashlib.sha256(deployed.read_bytes()).hexdigest() == before

    # the same change under a new version goes through the stage's gates and reaches Airflow
    commit(repo, release_yaml(name, "1.0.1", "3600000", False, True), "1.0.1: the new DAG code")
    ctl.webhook()
    wait_for(
        lambda: status(state, name).get("stages", {}).get("dev", {}).get("version") == "1.0.1"
        and status(state, name)["stages"]["dev"]["phase"] == "Succeeded",
        180, "dev Succeeded for 1.0.1", ctl.log,
    )
    assert b"new behaviour without a version bump" in deployed.read_bytes()
    assert _ready(state, name).get("reason") == "ReconciliationSucceeded"
    # the known-good commit is pinned in the repo, so rewriting history cannot take it away
    head = git(repo, "rev-parse", "HEAD").strip()
    assert git(repo, "rev-parse", f"refs/pipectl/known-good/{name}/dev").strip() == head

