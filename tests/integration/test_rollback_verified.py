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


def test_inconclusive_gate_times_out(world) -> None:  # type: ignore[no-untyped-def]
    ctl, repo, state, name = world
    ctl.start()
    wait_for(lambda: status(state, name).get("stages", {}).get("dev", {}).get("phase") == "Succeeded",
             120, "dev Succeeded for 1.0.0", ctl.log)
    # 1.1.0 waits on an approval nobody gives; past its inconclusiveTimeout the gate counts as
    # failed and the stage rolls back to 1.0.0 on its own
    gate = """\
    gates:
      - name: sign-off
        type: approval
        stages: [dev]
        inconclusiveTimeout: 6s
"""
    commit(repo, release_yaml(name, "1.1.0", "7200000", False, False) + gate, "1.1.0: needs a sign-off")
    ctl.webhook()
    wait_for(lambda: status(state, name)["stages"]["dev"].get("phase") == "Verifying"
             and status(state, name)["stages"]["dev"].get("version") == "1.1.0", 60, "1.1.0 verifying", ctl.log)
    waited = wait_for(lambda: status(state, name)["stages"]["dev"].get("phase") == "RolledBack", 60,
                      "the gate timing out", ctl.log)
    dev = status(state, name)["stages"]["dev"]
    assert dev["version"] == "1.1.0" and dev["reason"] == "GateFailed", dev
    assert "gate sign-off failed: inconclusive for" in dev["message"], dev["message"]
    assert "inconclusiveTimeout 6s" in dev["message"] and "restored 1.0.0" in dev["message"]
    assert waited >= 3, f"timed out after {waited:.1f}s, before its 6 s timeout could pass"
    assert topic_retention(name, ctl) == "3600000"  # 1.0.0's config is back


def topic_retention(name: str, ctl: Ctl) -> str | None:
    from ctlkit import topic_config

    uid = name.removeprefix("rc-")
    cfg = topic_config("127.0.0.1:9092", f"it{uid}.rc.events")
    return cfg.get("retention.ms") if cfg else None


def test_post_promotion_failure_rolls_back_prod(world, stack: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    from ctlkit import commit_files, stage_env_yaml
    from pyhive import hive

    ctl, repo, state, name = world
    uid = name.removeprefix("rc-")
    prod = stage_env_yaml("prod", f"it{uid}.", f"it{uid}_", stack["airflow_dags_folder"])
    v1 = release_yaml(name, "1.0.0", "3600000", False, False).replace("stages: [dev]", "stages: [prod]")
    commit_files(repo, {"environments/prod.yaml": prod, "releases/rc.yaml": v1}, "prod only")
    ctl.start()
    wait_for(lambda: status(state, name).get("stages", {}).get("prod", {}).get("phase") == "Succeeded",
             120, "prod Succeeded for 1.0.0", ctl.log)

    # 2.0.0 passes its gate at promotion (the table is empty) and keeps being watched for the bake
    watched = """\
    gates:
      - name: no-rows-yet
        type: dataQuality
        query: SELECT count(*) FROM rc.counts
        expect: "== 0"
        postPromotion: true
    analysis:
      bake: 10m
"""
    v2 = release_yaml(name, "2.0.0", "7200000", False, False).replace("stages: [dev]", "stages: [prod]")
    commit(repo, v2 + watched, "2.0.0: watched after promotion")
    ctl.webhook()
    wait_for(lambda: status(state, name)["stages"]["prod"].get("version") == "2.0.0"
             and status(state, name)["stages"]["prod"].get("phase") == "Succeeded", 120, "prod on 2.0.0", ctl.log)
    assert topic_retention(name, ctl) == "7200000"

    # after promotion the data goes bad: the post-promotion gate fails and prod goes back to 1.0.0
    con = hive.connect("127.0.0.1", 10000, auth="NOSASL")
    try:
        con.cursor().execute(f"INSERT INTO it{uid}_rc.counts PARTITION (dt='2026-01-01') VALUES ('a', 1)")
    finally:
        con.close()
    wait_for(lambda: status(state, name)["stages"]["prod"].get("phase") == "RolledBack", 90,
             "prod rolled back after promotion", ctl.log)
    st = status(state, name)["stages"]["prod"]
    assert st["version"] == "2.0.0" and st["reason"] == "GateFailed", st
    assert "post-promotion gate no-rows-yet failed" in st["message"] and "restored 1.0.0" in st["message"], st
    wait_for(lambda: topic_retention(name, ctl) == "3600000", 30, "1.0.0's topic config back", ctl.log)
    ctl.stop()
    got = json.loads(pipectl("get", "releases", "--state", f"sqlite:///{state}", "-o", "json").stdout)
    assert got, got
    r = pipectl("audit", name, "--state", f"sqlite:///{state}", "-o", "json")
    records = json.loads(r.stdout)
    records = records.get("items", records) if isinstance(records, dict) else records
    assert any(x.get("kind") == "rollback" and x.get("outcome") == "rolledBack" and "post-promotion" in x.get("message", "")
               for x in records), records
