"""``pipectl backfill`` against the real stack: the example DAG (manifests/dags/host_metrics_daily.py)
deployed through the AirflowAdapter for a stage of its own (with the sidecar's ``pipectl`` runtime
facts), whose task runs ``pipectl transform run`` for its partition: the daily transform of the
release, materialized incrementally (partitioned by ``dt``) through Presto from a 1-minute table
with known rows.

- A backfill of three days starts three DAG runs with the deterministic run ids, records rows
  and checksum per partition in the ledger and one audit record; a second identical backfill
  starts no run (the Airflow API lists the same runs) and the table is identical through Presto
  (the same rows, the same checksums, measured independently of the ledger).
- A DAG that fails on the first attempt of one partition (the example DAG with a hook appended)
  is retried under ``…__r2``; the ledger shows attempts = 2 and Airflow keeps the failed run.
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ctlkit import stage_env_yaml
from typer.testing import CliRunner

from controller.adapters.airflow import AirflowAdapter, LocalFolderDeployer
from controller.adapters.presto import PrestoClient
from controller.adapters.transforms import TransformAdapter
from controller.audit.ledger import Ledger
from controller.model.errors import TransientBackendError
from controller.plan.actions import Action, Op
from controller.plan.backfill import run_id
from controller.plan.desired import desired_resources, stage_context
from controller.plan.resources import DagResource, ResourceKind
from controller.plan.transforms import transform_resources
from controller.source.validate import load_repo
from controller.store.db import Store

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]
RELEASE = "host-metrics"

# host, metric, window_start, samples, avg_value, max_value, dt
ROWS = [
    ("h1", "cpu", "2026-03-01 00:00:00", 2, 1.0, 2.0, "2026-03-01"),
    ("h1", "cpu", "2026-03-01 00:01:00", 2, 3.0, 4.0, "2026-03-01"),
    ("h2", "mem", "2026-03-01 10:00:00", 5, 0.5, 0.9, "2026-03-01"),
    ("h1", "cpu", "2026-03-02 00:00:00", 1, 5.0, 5.0, "2026-03-02"),
    ("h1", "mem", "2026-03-02 00:00:00", 4, 0.5, 1.0, "2026-03-02"),
    ("h3", "io", "2026-03-03 23:59:00", 7, 2.0, 6.5, "2026-03-03"),
    ("h3", "io", "2026-03-03 23:58:00", 0, 9.0, 9.0, "2026-03-03"),  # no samples: filtered out
]

# Appended to the example DAG: fail the first attempt (a run id without ``__r<k>``) of the
# partitions listed in the ``fail_first`` param, and no task-level retries.
FLAKY_HOOK = textwrap.dedent(
    """

    # --- test hook (tests/integration/test_backfill.py) ---
    _materialize = materialize


    def _flaky(**context):
        if context["params"].get("partition") in (context["params"].get("fail_first") or []) and (
            "__r" not in context["run_id"]
        ):
            raise RuntimeError("deterministic failure of a first attempt (test)")
        return _materialize(**context)


    _task = dag.get_task("materialize_daily")
    _task.python_callable = _flaky
    _task.retries = 0
    """
)


def release_yaml(stage: str) -> str:
    return f"""\
apiVersion: pipectl.dev/v1alpha1
kind: PipelineRelease
metadata:
  name: {RELEASE}
spec:
  version: 1.0.0
  tables:
    - name: telemetry.host_metrics_1m
      columns:
        - {{name: host, type: string}}
        - {{name: metric, type: string}}
        - {{name: window_start, type: timestamp}}
        - {{name: samples, type: bigint}}
        - {{name: avg_value, type: double}}
        - {{name: max_value, type: double}}
      partitionedBy:
        - {{name: dt, type: string}}
  dags:
    - id: host_metrics_daily
      path: dags/host_metrics_daily.py
    - id: host_metrics_flaky
      path: dags/host_metrics_flaky.py
      params:
        fail_first: ["2026-03-02"]
  transforms:
    - name: telemetry.host_metrics_daily
      sql: transforms/host_metrics_daily.sql
      materialized: incremental
      partitionBy: [dt]
  rollout:
    stages: [{stage}]
"""


@dataclass
class Env:
    stage: str
    repo: Path
    state: str
    db: str
    airflow: AirflowAdapter
    presto: Callable[[str], list[tuple[Any, ...]]]

    def backfill(self, *args: str) -> Any:
        from controller.cli.main import app

        result = CliRunner().invoke(
            app, ["backfill", RELEASE, "--stage", self.stage, "--repo", str(self.repo), "--state", self.state,
                  "--poll", "1s", "--timeout", "10m", *args],
        )
        return result

    def deploy(self, dag: str) -> str:
        rel = load_repo(self.repo).release(RELEASE)
        snap = load_repo(self.repo)
        ctx = stage_context(self.stage, {n: snap.environment(n) for n in snap.environments})
        [res] = [
            r for r in desired_resources(rel, ctx, lambda p: (self.repo / p).read_bytes())
            if isinstance(r, DagResource) and r.name == f"{dag}__{self.stage}"
        ]
        self.airflow.apply(Action(op=Op.CREATE, kind=ResourceKind.DAG, name=res.name, reason="test", desired=res))
        return res.name

    def checksums(self) -> dict[str, tuple[int, str]]:
        """Rows and checksum per dt, measured through Presto independently of the ledger."""
        rows = self.presto(
            f'SELECT dt, count(*), to_hex(checksum(ROW(host, metric, day, samples, avg_value, max_value))) '
            f'FROM hive."{self.db}"."host_metrics_daily" GROUP BY dt'
        )
        return {str(d): (int(n), str(c).lower()) for d, n, c in rows}

    def daily_rows(self) -> list[tuple[Any, ...]]:
        rows = self.presto(
            f'SELECT host, metric, CAST(day AS varchar), samples, avg_value, max_value, dt '
            f'FROM hive."{self.db}"."host_metrics_daily"'
        )
        return sorted((h, m, d, int(n), round(float(a), 9), float(x), dt) for h, m, d, n, a, x, dt in rows)


def expected_daily(days: list[str]) -> list[tuple[Any, ...]]:
    acc: dict[tuple[str, str, str], list[float]] = {}
    for h, m, _ws, n, a, x, d in ROWS:
        if n <= 0 or d not in days:
            continue
        s = acc.setdefault((h, m, d), [0, 0.0, float("-inf")])
        s[0] += n
        s[1] += a * n
        s[2] = max(s[2], x)
    return sorted((h, m, d, int(n), round(t / n, 9), x, d) for (h, m, d), (n, t, x) in acc.items())


@pytest.fixture
def env(
    stack: dict[str, Any],
    unique_name: str,
    tmp_path: Path,
    hive_conn: Callable[..., Any],
    presto_conn: Callable[..., Any],
) -> Iterator[Env]:
    stage = f"bf{unique_name}"
    folder = stack["airflow_dags_folder"]
    repo = tmp_path / "repo"
    for d in ("releases", "environments", "dags", "transforms"):
        (repo / d).mkdir(parents=True)
    (repo / "releases" / "host-metrics.yaml").write_text(release_yaml(stage))
    (repo / "environments" / f"{stage}.yaml").write_text(stage_env_yaml(stage, f"{stage}.", f"{stage}_", folder))
    example = (MANIFESTS / "dags" / "host_metrics_daily.py").read_text()
    (repo / "dags" / "host_metrics_daily.py").write_text(example)
    (repo / "dags" / "host_metrics_flaky.py").write_text(example + FLAKY_HOOK)
    (repo / "transforms" / "host_metrics_daily.sql").write_text(
        (MANIFESTS / "transforms" / "host_metrics_daily.sql").read_text()
    )
    assert not load_repo(repo).problems, load_repo(repo).problems

    db = f"{stage}_telemetry"
    hive_conn().cursor().execute(f"CREATE DATABASE `{db}`")
    conn = presto_conn()

    def presto(sql: str) -> list[tuple[Any, ...]]:
        cur = conn.cursor()
        cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()]

    presto(
        f'CREATE TABLE hive."{db}"."host_metrics_1m" (host varchar, metric varchar, window_start timestamp, '
        "samples bigint, avg_value double, max_value double, dt varchar) "
        "WITH (format = 'PARQUET', partitioned_by = ARRAY['dt'])"
    )
    # The controller's part: materialize the transform for the stage (built empty: the source is).
    snap = load_repo(repo)
    ctx = stage_context(stage, {n: snap.environment(n) for n in snap.environments})
    client = PrestoClient(stack["presto_host"], int(stack["presto_port"]))
    [transform] = transform_resources(snap.release(RELEASE), ctx, lambda p: (repo / p).read_bytes())
    TransformAdapter(client).apply(
        Action(op=Op.CREATE, kind=ResourceKind.TRANSFORM, name=transform.name, reason="test", desired=transform)
    )
    values = ", ".join(f"('{h}', '{m}', TIMESTAMP '{ws}', {n}, {a}, {x}, '{d}')" for h, m, ws, n, a, x, d in ROWS)
    presto(f'INSERT INTO hive."{db}"."host_metrics_1m" VALUES {values}')
    assert presto(f'SELECT count(*) FROM hive."{db}"."host_metrics_daily"') == [(0,)]

    # The sidecar tells the DAG's task how to call pipectl (what build_runtime's Wiring writes).
    runtime = {"pipectl": {"python": sys.executable, "repo": str(repo)}}
    airflow = AirflowAdapter(
        stack["airflow_url"], stack.get("airflow_user", "admin"), "admin",
        LocalFolderDeployer(Path(folder), runtime), pickup_timeout=120.0,
    )
    e = Env(stage, repo, f"sqlite:///{tmp_path / 'state.db'}", db, airflow, presto)
    deployed: list[str] = []
    e.deploy = _tracking(e.deploy, deployed)  # type: ignore[method-assign]
    yield e
    for name in deployed:
        _remove_dag(airflow, name)
    for f in Path(folder).glob(f"*__{stage}*"):
        f.unlink()
    hive_conn().cursor().execute(f"DROP DATABASE IF EXISTS `{db}` CASCADE")


def _remove_dag(airflow: AirflowAdapter, name: str) -> None:
    """Pause, then delete once no task of the DAG runs any more (the scheduler may be running one)."""
    live = airflow.observe(ResourceKind.DAG, [name]).get(name)
    if live is None:
        return
    airflow.set_paused(name, True)
    deadline = time.monotonic() + 120
    while True:
        try:
            airflow.apply(Action(op=Op.DELETE, kind=ResourceKind.DAG, name=name, reason="cleanup", desired=live))
            return
        except TransientBackendError:
            if time.monotonic() > deadline:
                raise
            time.sleep(3)


def _tracking(fn: Callable[[str], str], seen: list[str]) -> Callable[[str], str]:
    def deploy(dag: str) -> str:
        name = fn(dag)
        seen.append(name)
        return name

    return deploy


def _runs(env: Env, dag_id: str) -> dict[str, str]:
    return {r["run_id"]: r["state"] for r in env.airflow.list_runs(dag_id)}


def test_backfill_twice_starts_no_new_runs_and_keeps_the_table_identical(env: Env) -> None:
    dag_id = env.deploy("host_metrics_daily")

    dry = env.backfill("--dag", "host_metrics_daily", "--from", DAYS[0], "--to", DAYS[-1], "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "dry run: 3 run(s) would start, 0 partition(s) skipped" in dry.output
    assert run_id(RELEASE, "1.0.0", DAYS[0]) in dry.output
    assert not [r for r in _runs(env, dag_id) if r.startswith("pipectl_backfill__")]

    first = env.backfill("--dag", "host_metrics_daily", "--from", DAYS[0], "--to", DAYS[-1], "--parallelism", "2", "-o", "json")
    assert first.exit_code == 0, first.output
    out = json.loads(first.output[first.output.index("{"):])
    assert (out["outcome"], out["runs_started"], out["version"]) == ("succeeded", 3, "1.0.0")
    assert out["output_table"] == f"{env.db}.host_metrics_daily"
    runs = _runs(env, dag_id)
    backfill_runs = {r: s for r, s in runs.items() if r.startswith("pipectl_backfill__")}
    assert backfill_runs == {run_id(RELEASE, "1.0.0", d): "success" for d in DAYS}

    measured = env.checksums()
    assert set(measured) == set(DAYS)
    assert env.daily_rows() == expected_daily(DAYS)
    ledger = {r["partition"]: r for r in Store(env.state).backfill_rows(RELEASE, env.stage)}
    for d in DAYS:
        assert (ledger[d]["status"], ledger[d]["attempts"], ledger[d]["version"]) == ("success", 1, "1.0.0")
        assert (ledger[d]["rows"], ledger[d]["checksum"]) == measured[d]
        assert ledger[d]["run_id"] == run_id(RELEASE, "1.0.0", d)

    second = env.backfill("--dag", "host_metrics_daily", "--from", DAYS[0], "--to", DAYS[-1], "--parallelism", "2", "-o", "json")
    assert second.exit_code == 0, second.output
    out2 = json.loads(second.output[second.output.index("{"):])
    assert (out2["outcome"], out2["runs_started"]) == ("succeeded", 0)
    assert {p["status"] for p in out2["partitions"]} == {"skipped"}
    assert all("unchanged" in p["message"] for p in out2["partitions"])
    assert _runs(env, dag_id) == runs, "the second backfill started or changed Airflow runs"
    assert env.checksums() == measured
    assert env.daily_rows() == expected_daily(DAYS)

    # A wider range plans only the new day; nothing runs in a dry run.
    dry = env.backfill("--dag", "host_metrics_daily", "--from", DAYS[0], "--to", "2026-03-04", "--dry-run")
    assert "dry run: 1 run(s) would start, 3 partition(s) skipped" in dry.output, dry.output
    assert _runs(env, dag_id) == runs

    records = [r for r in Ledger(Store(env.state)).records(RELEASE) if r["kind"] == "backfill"]
    assert [r["outcome"] for r in records] == ["succeeded", "succeeded"]
    assert records[0]["lineage"]["outputs"] == [f"hive:{env.db}.host_metrics_daily"]
    assert records[0]["lineage"]["inputs"] == [f"hive:{env.db}.host_metrics_1m"]
    assert len(records[0]["actions"]) == 3 and "started=0" in records[1]["actions"][0]
    assert Ledger(Store(env.state)).verify()[0]


def test_a_failed_chunk_is_retried_under_a_new_run_id_and_the_ledger_shows_it(env: Env) -> None:
    dag_id = env.deploy("host_metrics_flaky")
    days = DAYS[:2]
    result = env.backfill("--dag", "host_metrics_flaky", "--from", days[0], "--to", days[-1], "--retries", "1",
                          "-o", "json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output[result.output.index("{"):])
    assert (out["outcome"], out["runs_started"]) == ("succeeded", 3)

    runs = {r: s for r, s in _runs(env, dag_id).items() if r.startswith("pipectl_backfill__")}
    assert runs == {
        run_id(RELEASE, "1.0.0", "2026-03-01"): "success",
        run_id(RELEASE, "1.0.0", "2026-03-02"): "failed",
        run_id(RELEASE, "1.0.0", "2026-03-02", 2): "success",
    }
    ledger = {r["partition"]: r for r in Store(env.state).backfill_rows(RELEASE, env.stage)}
    assert (ledger["2026-03-02"]["attempts"], ledger["2026-03-02"]["status"]) == (2, "success")
    assert ledger["2026-03-02"]["run_id"] == run_id(RELEASE, "1.0.0", "2026-03-02", 2)
    assert (ledger["2026-03-01"]["attempts"], ledger["2026-03-01"]["status"]) == (1, "success")
    assert env.daily_rows() == expected_daily(days)
    measured = env.checksums()
    assert (ledger["2026-03-02"]["rows"], ledger["2026-03-02"]["checksum"]) == measured["2026-03-02"]

    [rec] = [r for r in Ledger(Store(env.state)).records(RELEASE) if r["kind"] == "backfill"]
    assert any("2026-03-02: success run=" + run_id(RELEASE, "1.0.0", "2026-03-02", 2) + " attempts=2" in a
               for a in rec["actions"])
