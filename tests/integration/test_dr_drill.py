"""Disaster-recovery drill: lose the controller's state store and a stage's resources.

1. Without a backup, a new controller rebuilds the stage from git alone (the state store holds
   nothing that git + the backends cannot give back, except history).
2. With a backup (``pipectl state backup``/``restore``), the audit ledger comes back intact — same
   records, same hash chain, then a recorded ``state-restore`` — and the controller repairs the
   stage as drift.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from ctlkit import Ctl, cleanup, dag_id, free_port, make_repo, pipectl, status, topic_config, wait_for
from pyhive import hive


def succeeded(state: Path, name: str) -> bool:
    dev = status(state, name).get("stages", {}).get("dev", {})
    return bool(dev.get("phase") == "Succeeded" and dev.get("version") == "1.0.0")


def destroy_stage(uid: str, dags_folder: str) -> None:
    """The disaster: every backend resource of the stage is gone."""
    admin = AdminClient({"bootstrap.servers": "127.0.0.1:9092"})
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"it{uid}.")]
    for f in admin.delete_topics(topics).values():
        f.result(timeout=30)
    con = hive.connect("127.0.0.1", 10000, auth="NOSASL")
    con.cursor().execute(f"DROP DATABASE IF EXISTS `it{uid}_rc` CASCADE")
    con.close()
    for f in Path(dags_folder).glob(f"{dag_id(f'rc-{uid}')}__*"):
        f.unlink()


def destroy_state(state: Path) -> None:
    shutil.rmtree(state.parent)


def stage_present(uid: str, dags_folder: str) -> bool:
    if topic_config("127.0.0.1:9092", f"it{uid}.rc.events") is None:
        return False
    con = hive.connect("127.0.0.1", 10000, auth="NOSASL")
    try:
        cur = con.cursor()
        cur.execute(f"SHOW TABLES IN `it{uid}_rc`")
        tables = {r[1] for r in cur.fetchall()}
    except Exception:
        return False
    finally:
        con.close()
    return {"counts", "counts_v"} <= tables and (Path(dags_folder) / f"{dag_id(f'rc-{uid}')}__dev.py").exists()


@pytest.fixture
def world(tmp_path: Path, stack: dict[str, Any], unique_name: str) -> Iterator[tuple[Ctl, Path, str, str]]:
    name = f"rc-{unique_name}"
    repo = make_repo(tmp_path, unique_name, name, stack["airflow_dags_folder"], with_dag=True)
    state = tmp_path / "state" / "state.db"
    ctl = Ctl(repo, state, free_port(), tmp_path / "controller.log")
    yield ctl, state, name, stack["airflow_dags_folder"]
    ctl.stop()
    cleanup(stack, unique_name, name)


def test_disaster_recovery_drill(world, unique_name: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ctl, state, name, dags = world
    url = f"sqlite:///{state}"
    ctl.start()
    wait_for(lambda: succeeded(state, name), 120, "dev Succeeded", ctl.log)
    assert stage_present(unique_name, dags)
    backup = tmp_path / "backup" / "state-backup.db"
    assert pipectl("state", "backup", str(backup), "--state", url).returncode == 0
    before = pipectl("audit", "-o", "json", "--state", url)
    assert before.returncode == 0
    ctl.stop()

    # --- drill 1: no backup. State and stage are gone; the controller rebuilds from git. ---
    destroy_stage(unique_name, dags)
    destroy_state(state)
    assert not stage_present(unique_name, dags)
    ctl.start()
    wait_for(lambda: succeeded(state, name), 180, "dev rebuilt from git", ctl.log)
    assert stage_present(unique_name, dags)
    assert pipectl("audit", "verify", "--state", url).returncode == 0
    ctl.stop()

    # --- drill 2: restore the backup. The ledger is the one we backed up; drift is repaired. ---
    destroy_stage(unique_name, dags)
    destroy_state(state)
    assert pipectl("state", "restore", str(backup), "--state", url).returncode == 0
    restored = json.loads(pipectl("audit", "-o", "json", "--state", url).stdout)
    assert restored[:-1] == json.loads(before.stdout)  # every record and hash, as backed up
    # ... then the restore itself, recorded; the anchors went with the state directory, so it says
    # there was no anchor before it (kept elsewhere, they would be named: PIPECTL_ANCHORS)
    assert restored[-1]["kind"] == "state-restore", restored[-1]
    assert restored[-1]["details"]["previous_anchor"] is None
    verify = pipectl("audit", "verify", "--state", url)
    assert verify.returncode == 0, verify.stderr
    ctl.start()
    wait_for(lambda: stage_present(unique_name, dags), 180, "stage repaired after restore", ctl.log)
    wait_for(lambda: succeeded(state, name), 60, "status Succeeded after restore", ctl.log)
    assert pipectl("audit", "verify", "--state", url).returncode == 0
