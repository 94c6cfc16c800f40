"""The controller against the real stack: git commit → applied; commit + webhook → applied;
kill -9 mid-apply → restart converges without repeating completed actions; audit chain verified.

The release here has no Spark job (topic, table, serving view, DAG) so the test stays quick.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ctlkit import (
    Ctl,
    cleanup,
    commit,
    dag_id,
    free_port,
    make_repo,
    pipectl,
    release_yaml,
    status,
    topic_config,
    wait_for,
)


@pytest.fixture
def world(tmp_path: Path, stack: dict[str, Any], unique_name: str) -> Iterator[tuple[Ctl, Path, Path, str]]:
    name = f"rc-{unique_name}"
    repo = make_repo(tmp_path, unique_name, name, stack["airflow_dags_folder"])
    state = tmp_path / "state" / "state.db"
    ctl = Ctl(repo, state, free_port(), tmp_path / "controller.log")
    yield ctl, repo, state, name
    ctl.stop()
    cleanup(stack, unique_name, name)


def test_controller_commit_webhook_crash_resume_and_audit(
    world, stack: dict[str, Any], unique_name: str
) -> None:  # type: ignore[no-untyped-def]
    ctl, repo, state, name = world
    topic = f"it{unique_name}.rc.events"
    ctl.start()

    # 1. the commit that exists when the controller starts is applied to dev
    wait_for(
        lambda: status(state, name).get("stages", {}).get("dev", {}).get("phase") == "Succeeded",
        120,
        "dev Succeeded for 1.0.0",
        ctl.log,
    )
    cfg = topic_config("127.0.0.1:9092", topic)
    assert cfg is not None and cfg["retention.ms"] == "3600000"

    # 2. a later commit reaches the backend after a webhook (not the 30 s poll: interval is 2 s,
    #    but the webhook wakes the loop at once)
    commit(repo, release_yaml(name, "1.1.0", "7200000", False, False), "1.1.0: retention")
    t0 = time.time()
    ctl.webhook()
    wait_for(
        lambda: (topic_config("127.0.0.1:9092", topic) or {}).get("retention.ms") == "7200000",
        60,
        "retention change applied",
        ctl.log,
    )
    assert time.time() - t0 < 60

    # 3. kill -9 during an apply that adds a topic and a DAG (the DAG waits for Airflow's pickup)
    commit(repo, release_yaml(name, "1.2.0", "7200000", True, True), "1.2.0: second topic + DAG")
    ctl.webhook()

    def dag_started() -> bool:
        con = sqlite3.connect(state)
        try:
            rows = con.execute("SELECT action_id, state FROM journal WHERE action_id LIKE 'Dag/%'").fetchall()
        finally:
            con.close()
        return any(s == "started" for _, s in rows)

    wait_for(dag_started, 90, "the DAG action to start", ctl.log)
    ctl.kill9()
    con = sqlite3.connect(state)
    before = {
        a: (s, r)
        for a, s, r in con.execute("SELECT action_id, state, run_id FROM journal WHERE release = ?", (name,))
    }
    con.close()
    topic_b_action = f"Topic/it{unique_name}.rc.events_b/create"
    assert before[topic_b_action][0] == "done", before  # the topic wave finished before the DAG wave

    ctl.start()
    wait_for(
        lambda: (
            status(state, name).get("stages", {}).get("dev", {}).get("version") == "1.2.0"
            and status(state, name)["stages"]["dev"]["phase"] == "Succeeded"
        ),
        180,
        "1.2.0 Succeeded",
        ctl.log,
    )
    con = sqlite3.connect(state)
    after = {
        a: (s, r)
        for a, s, r in con.execute("SELECT action_id, state, run_id FROM journal WHERE release = ?", (name,))
    }
    con.close()
    # completed actions were not run again: same state, same run id as before the crash
    for action_id, (st, run_id) in before.items():
        if st == "done":
            assert after[action_id] == (st, run_id), action_id
    dag_action = next(a for a in after if a.startswith("Dag/"))
    assert after[dag_action][0] in ("done", "skipped")
    # and the backends show each resource once
    assert topic_config("127.0.0.1:9092", f"it{unique_name}.rc.events_b") is not None
    dags = Path(stack["airflow_dags_folder"])
    assert (dags / f"{dag_id(name)}__dev.py").exists()

    # 4. the audit chain verifies, and an altered row is named
    ctl.stop()
    ok = pipectl("audit", "verify", "--state", f"sqlite:///{state}")
    assert ok.returncode == 0, ok.stderr
    con = sqlite3.connect(state)
    seq, rec = con.execute("SELECT seq, record FROM audit ORDER BY seq LIMIT 1").fetchone()
    con.execute("UPDATE audit SET record = ? WHERE seq = ?", (rec.replace('"succeeded"', '"failed"'), seq))
    con.commit()
    con.close()
    bad = pipectl("audit", "verify", "--state", f"sqlite:///{state}")
    assert bad.returncode == 1
    assert f"record #{seq} (" in bad.stderr
