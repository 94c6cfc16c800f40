"""Rollback proves what it restored: a restore that cannot be applied ends RollbackFailed naming the
item, never RolledBack (real controller, real Hive table)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ctlkit import Ctl, cleanup, commit, free_port, make_repo, pipectl, release_yaml, status, wait_for

GATE = """\
    gates:
      - name: impossible-volume
        type: dataQuality
        stages: [dev]
        query: SELECT count(*) FROM rc.counts
        expect: "> 1000000"
    rollback:
      automatic: true
"""


def v2_with_column_and_failing_gate(name: str) -> str:
    text = release_yaml(name, "2.0.0", "3600000", False, False)
    text = text.replace(
        "columns: [{name: k, type: string}, {name: n, type: bigint}]",
        "columns: [{name: k, type: string}, {name: n, type: bigint}, {name: extra, type: string}]",
    )
    assert "extra" in text
    return text + GATE


@pytest.fixture
def world(tmp_path: Path, stack: dict[str, Any], unique_name: str) -> Iterator[tuple[Ctl, Path, Path, str]]:
    name = f"rc-{unique_name}"
    repo = make_repo(tmp_path, unique_name, name, stack["airflow_dags_folder"])
    state = tmp_path / "state" / "state.db"
    ctl = Ctl(repo, state, free_port(), tmp_path / "controller.log")
    yield ctl, repo, state, name
    ctl.stop()
    cleanup(stack, unique_name, name)


def test_refused_restore_is_rollback_failed(world) -> None:  # type: ignore[no-untyped-def]
    ctl, repo, state, name = world
    ctl.start()
    wait_for(lambda: status(state, name).get("stages", {}).get("dev", {}).get("phase") == "Succeeded",
             120, "dev Succeeded for 1.0.0", ctl.log)

    # 2.0.0 adds a column to the shared table, then fails its gate: restoring 1.0.0 would drop the
    # column, which pipectl refuses without a declared migration, so the rollback cannot complete
    commit(repo, v2_with_column_and_failing_gate(name), "2.0.0: extra column, failing gate")
    ctl.webhook()

    def settled() -> bool:
        dev = status(state, name).get("stages", {}).get("dev", {})
        return dev.get("version") == "2.0.0" and dev.get("phase") in ("RolledBack", "RollbackFailed")

    wait_for(settled, 120, "2.0.0 judged at dev", ctl.log)
    dev = status(state, name)["stages"]["dev"]
    print("dev after 2.0.0:", dev["phase"], dev["message"])
    assert dev["phase"] == "RollbackFailed", dev
    assert dev["reason"] == "RollbackFailed"
    assert "gate impossible-volume failed" in dev["message"]
    assert "rollback to 1.0.0 did not complete" in dev["message"]
    assert "ColumnDrop" in dev["message"] and "rc.counts" in dev["message"], dev["message"]

    # the ledger says what was not restored, and no record claims a rollback that did not happen
    ctl.stop()
    r = pipectl("audit", name, "--state", f"sqlite:///{state}", "-o", "json")
    assert r.returncode == 0, r.stderr
    records = json.loads(r.stdout)
    records = records.get("items", records) if isinstance(records, dict) else records
    rollbacks = [x for x in records if x.get("kind") == "rollback" and x.get("version") == "2.0.0"]
    assert rollbacks, records
    assert all(x["outcome"] == "failed" and x["reason"] == "RollbackFailed" for x in rollbacks), rollbacks
    assert not [x for x in records if x.get("outcome") == "rolledBack"], "a rollback was reported as done"
    verify = pipectl("audit", "verify", "--state", f"sqlite:///{state}")
    assert verify.returncode == 0, verify.stderr
