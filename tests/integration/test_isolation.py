"""One release never holds up or takes down another (a real ``pipectl controller run`` process,
the stack's Kafka, Hive and Airflow, git commits announced by the webhook):

- ``test_slow_release_does_not_block_others``: release A's new DAG version waits for A's in-flight
  Airflow run to drain (a requeue, not a blocked worker); meanwhile release B's commit reaches the
  live Kafka topic config within 5 s.
- ``test_unexpected_error_isolated``: release A's stage names a secret file that does not exist
  (a ``FileNotFoundError``, not a pipectl error); A shows Ready=False with the reason and message in
  ``get releases -o wide`` and ``describe``, B still converges, the process keeps running and
  ``/healthz`` answers.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from ctlkit import (
    Ctl,
    commit_files,
    free_port,
    init_repo,
    pipectl,
    stage_env_yaml,
    status,
    topic_config,
    wait_for,
)

pytestmark = pytest.mark.integration

SLOW_DAG = '''"""A DAG whose one task takes a while (its run is in flight when a new version arrives)."""
import json
from datetime import datetime
from pathlib import Path

from airflow import DAG
from airflow.operators.bash import BashOperator

_FILE = Path(__file__)
_META = _FILE.with_suffix(".pipectl.json")
PIPECTL = json.loads(_META.read_text()) if _META.exists() else {"tags": []}

with DAG(dag_id=_FILE.stem, tags=PIPECTL["tags"], schedule=None, start_date=datetime(2026, 1, 1),
         catchup=False):
    BashOperator(task_id="work", bash_command="sleep SECONDS")
'''


def _release(name: str, version: str, topic: str, retention: str, stage: str, dag: str | None) -> str:
    dags = f"  dags:\n    - id: {dag}\n      path: dags/{dag}.py\n" if dag else ""
    return f"""\
apiVersion: pipectl.dev/v1alpha1
kind: PipelineRelease
metadata:
  name: {name}
spec:
  version: {version}
  topics:
    - name: {topic}
      partitions: 1
      replicationFactor: 1
      config: {{retention.ms: "{retention}"}}
{dags}  rollout:
    stages: [{stage}]
"""


def _airflow(stack: dict[str, Any], method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    password = os.environ.get(stack.get("airflow_password_env", "PIPECTL_AIRFLOW_PASSWORD"), "admin")
    auth = b64encode(f"{stack.get('airflow_user', 'admin')}:{password}".encode()).decode()
    req = urllib.request.Request(
        stack["airflow_url"].rstrip("/") + "/api/v1" + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=15) as r:
        return json.loads(r.read() or b"{}")


def _stage(state: Path, name: str, stage: str) -> dict[str, Any]:
    return dict(status(state, name).get("stages", {}).get(stage) or {})


def _ready(state: Path, name: str) -> dict[str, Any]:
    conds = status(state, name).get("conditions") or []
    return next((c for c in conds if c["type"] == "Ready"), {})


@pytest.fixture
def world(tmp_path: Path, stack: dict[str, Any], unique_name: str) -> Iterator[dict[str, Any]]:
    uid = unique_name
    folder = Path(stack["airflow_dags_folder"])
    w: dict[str, Any] = {"uid": uid, "folder": folder, "prefix": f"it{uid}.", "tmp": tmp_path}
    yield w
    ctl = w.get("ctl")
    if ctl is not None:
        ctl.stop()
    admin = AdminClient({"bootstrap.servers": "127.0.0.1:9092"})
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(w["prefix"])]
    for f in (admin.delete_topics(topics).values() if topics else []):
        f.result(timeout=30)
    for f in folder.glob(f"*{uid}*"):
        f.unlink()


def test_slow_release_does_not_block_others(world: dict[str, Any], stack: dict[str, Any]) -> None:
    uid, folder, prefix = world["uid"], world["folder"], world["prefix"]
    dag = f"slow_{uid}"
    files = {
        "environments/dev.yaml": stage_env_yaml("dev", prefix, f"it{uid}_", str(folder)),
        f"dags/{dag}.py": SLOW_DAG.replace("SECONDS", "25"),
        "releases/a.yaml": _release(f"a-{uid}", "1.0.0", "a.events", "3600000", "dev", dag),
        "releases/b.yaml": _release(f"b-{uid}", "1.0.0", "b.events", "3600000", "dev", None),
    }
    repo = init_repo(world["tmp"], files, "1.0.0 of a and b")
    state = world["tmp"] / "state" / "state.db"
    ctl = world["ctl"] = Ctl(repo, state, free_port(), world["tmp"] / "controller.log", interval="60s")
    ctl.start()
    for n in (f"a-{uid}", f"b-{uid}"):
        wait_for(lambda n=n: _stage(state, n, "dev").get("phase") == "Succeeded", 180, f"{n} dev", ctl.log)

    # A's live DAG has a run in flight; A's new version must wait for it to drain. The stack's
    # Airflow runs tasks in its scheduler (SequentialExecutor), so the task stays under the
    # scheduler's 30 s health threshold; the steps below take ~10 s of it.
    dag_id = f"{dag}__dev"
    run_id = f"it__{uid}"
    _airflow(stack, "POST", f"/dags/{dag_id}/dagRuns", {"dag_run_id": run_id})
    wait_for(
        lambda: _airflow(stack, "GET", f"/dags/{dag_id}/dagRuns/{run_id}").get("state") == "running",
        120, "A's DAG run running", ctl.log,
    )
    commit_files(
        repo,
        {
            f"dags/{dag}.py": SLOW_DAG.replace("SECONDS", "1"),
            "releases/a.yaml": _release(f"a-{uid}", "1.0.1", "a.events", "3600000", "dev", dag),
        },
        "a 1.0.1: new DAG code",
    )
    ctl.webhook()
    wait_for(lambda: _stage(state, f"a-{uid}", "dev").get("reason") == "RunsInFlight", 60, "A waits", ctl.log)

    # while A waits, B's commit reaches Kafka within 5 s
    commit_files(
        repo, {"releases/b.yaml": _release(f"b-{uid}", "1.0.1", "b.events", "7200000", "dev", None)}, "b 1.0.1"
    )
    t0 = time.monotonic()
    ctl.webhook()
    topic = f"{prefix}b.events"
    wait_for(
        lambda: (topic_config("127.0.0.1:9092", topic) or {}).get("retention.ms") == "7200000",
        30, "B's topic config", ctl.log,
    )
    took = time.monotonic() - t0
    assert took <= 5.0, f"B's commit took {took:.1f} s to reach Kafka while A waited on a drain"
    assert _stage(state, f"a-{uid}", "dev").get("reason") == "RunsInFlight", _stage(state, f"a-{uid}", "dev")
    assert _airflow(stack, "GET", f"/dags/{dag_id}/dagRuns/{run_id}").get("state") == "running"
    assert "sleep 25" in (folder / f"{dag_id}.py").read_text()  # A's old code still live


def test_unexpected_error_isolated(
    world: dict[str, Any], stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    uid, folder, prefix = world["uid"], world["folder"], world["prefix"]
    secrets = world["tmp"] / "secrets"
    secrets.mkdir()
    monkeypatch.setenv("PIPECTL_SECRETS_DIR", str(secrets))  # the controller's secrets directory
    missing = secrets / "airflow-password"  # allowed by policy, but not there: an OSError, not ours
    broken_env = stage_env_yaml("devx", prefix + "x.", f"it{uid}_x_", str(folder)).replace(
        '"env:PIPECTL_AIRFLOW_PASSWORD"', f'"file:{missing}"'
    )
    dag = f"iso_{uid}"
    files = {
        "environments/dev.yaml": stage_env_yaml("dev", prefix, f"it{uid}_", str(folder)),
        "environments/devx.yaml": broken_env,
        f"dags/{dag}.py": SLOW_DAG.replace("SECONDS", "1"),
        "releases/a.yaml": _release(f"a-{uid}", "1.0.0", "a.events", "3600000", "devx", dag),
        "releases/b.yaml": _release(f"b-{uid}", "1.0.0", "b.events", "3600000", "dev", None),
    }
    repo = init_repo(world["tmp"], files, "a on a stage with a missing secret file, b fine")
    state = world["tmp"] / "state" / "state.db"
    ctl = world["ctl"] = Ctl(repo, state, free_port(), world["tmp"] / "controller.log", interval="5s")
    ctl.start()

    wait_for(lambda: _ready(state, f"a-{uid}").get("status") == "False", 120, "A Ready=False", ctl.log)
    wait_for(lambda: _stage(state, f"b-{uid}", "dev").get("phase") == "Succeeded", 180, "B converges", ctl.log)
    cond = _ready(state, f"a-{uid}")
    # an OSError is classed as configuration (controller.model.errors.error_class); any other
    # foreign exception is ReconcileError (tests/unit/engine/test_reconciler_transitions.py)
    assert cond["reason"] == "ConfigurationError", cond
    assert "FileNotFoundError" in cond["message"] and "airflow-password" in cond["message"], cond
    assert "stage devx" in cond["message"], cond
    assert topic_config("127.0.0.1:9092", f"{prefix}b.events") is not None

    # a later commit to B still converges while A keeps failing; the process keeps running
    commit_files(
        repo, {"releases/b.yaml": _release(f"b-{uid}", "1.0.1", "b.events", "7200000", "dev", None)}, "b 1.0.1"
    )
    ctl.webhook()
    wait_for(
        lambda: (topic_config("127.0.0.1:9092", f"{prefix}b.events") or {}).get("retention.ms") == "7200000",
        60, "B's second commit", ctl.log,
    )
    assert ctl.proc is not None and ctl.proc.poll() is None
    with urllib.request.urlopen(f"http://127.0.0.1:{ctl.port}/healthz", timeout=5) as r:
        assert r.status == 200

    state_url = f"sqlite:///{state}"
    wide = pipectl("get", "releases", "-o", "wide", "--state", state_url)
    assert wide.returncode == 0, wide.stderr
    row = next(line for line in wide.stdout.splitlines() if line.startswith(f"a-{uid}"))
    assert "ConfigurationError" in row, wide.stdout
    described = pipectl("describe", "release", f"a-{uid}", "--state", state_url)
    assert described.returncode == 0, described.stderr
    assert "ConfigurationError" in described.stdout and "FileNotFoundError" in described.stdout, described.stdout

    # fixing the environment heals A without a restart
    missing.write_text(os.environ.get(stack.get("airflow_password_env", "PIPECTL_AIRFLOW_PASSWORD"), "admin"))
    wait_for(lambda: _stage(state, f"a-{uid}", "devx").get("phase") == "Succeeded", 240, "A heals", ctl.log)
