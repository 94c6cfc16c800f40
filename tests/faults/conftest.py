"""Fault injection against the local stack: the integration suite's fixtures and ctlkit, reused.

Everything under tests/faults is marked ``integration`` (it needs ``make stack-up``; skipped
without it unless ``CI``/``PIPECTL_REQUIRE_STACK`` is set). These tests stop and restart the
stack's components (``python -m controller.devstack down|up --only NAME``) and kill controllers
with SIGKILL; every test brings back what it stopped, also when it fails.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))  # ctlkit, as tests/integration imports it

from tests.integration import conftest as _it  # noqa: E402

# the integration suite's fixtures, for this directory
stack = _it.stack
kafka_bootstrap = _it.kafka_bootstrap
hive_conn = _it.hive_conn
presto_conn = _it.presto_conn
airflow_api = _it.airflow_api
spark_env = _it.spark_env
unique_name = _it.unique_name


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def make_world(tmp_path: Path, stack: dict[str, Any], unique_name: str) -> Iterator[Callable[..., Any]]:
    """``make_world(stages, envs=None, url=None)`` -> a faultkit.World: a git repo with one
    Environment per stage (own topic/database prefixes on the local stack; ``envs`` overrides some)
    and the DAG, a controller (not started) on ``url`` (default: SQLite under tmp_path/state).
    Everything the test created is dropped at the end, and the controller stopped."""
    from ctlkit import DAG_SOURCE, canary_env_yaml, drop_everything, free_port, init_repo, stage_env_yaml
    from faultkit import FaultCtl, World, short

    made: list[World] = []
    folder = str(stack["airflow_dags_folder"])

    def make(stages: list[str], envs: dict[str, str] | None = None, url: str | None = None) -> World:
        uid = unique_name
        files = {"dags/rc_daily.py": DAG_SOURCE}
        for s in stages:
            files[f"environments/{s}.yaml"] = (envs or {}).get(s) or (
                canary_env_yaml(s, "prod") if s == "canary"
                else stage_env_yaml(s, f"it{uid}{short(s)}.", f"it{uid}{short(s)}_", folder))
        repo = init_repo(tmp_path, files, "environments")
        state_dir = tmp_path / "state"
        state_dir.mkdir(exist_ok=True)
        url = url or f"sqlite:///{state_dir / 'state.db'}"
        # the audit anchors (and the leader lock, under the working directory) stay in tmp_path
        env = {"PIPECTL_ANCHOR_KEY": str(state_dir / "audit-anchor.key"),
               "PIPECTL_ANCHORS": str(state_dir / "audit-anchors.jsonl")}
        ctl = FaultCtl(repo, url, free_port(), tmp_path / "controller.log", cwd=tmp_path, env=env)
        w = World(uid, f"fx-{uid}", f"rc_{uid}", list(stages), repo, url, ctl, folder, tmp_path)
        made.append(w)
        return w

    yield make
    for w in made:
        w.ctl.stop()
        try:
            drop_everything(w.uid, w.dbs(), folder, f"{w.dag}__*")
        finally:
            if w._store is not None:
                w._store.close()
