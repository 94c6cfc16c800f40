"""Key-subset canary serving on the real stack: the serving view a ``strategy: canary`` release with
``keys: {columns: [host], steps: [10, 50, 100]}`` gets at its first step, as PrestoDB serves it.

The release's desired state at prod is computed by the planner (``plan.desired``) from the step the
pure step machine records (``rollout.keysteps``); the Hive adapter converges it (tables through the
Spark Thrift Server, the view with one ``CREATE OR REPLACE VIEW`` through Presto) and reads it back
from the metastore (a second plan is empty). The stable table (1.0.0) holds 40 hosts by 10 minutes,
the canary's (1.1.0) minutes 4..9 (its cutover is minute 5), every row tagged with its version.

- First step (10 %): for each (host, minute) the view returns exactly one row; from the canary's
  table for hosts whose bucket (``plan.keysplit.bucket_of``, the Python mirror of the view's
  ``crc32`` bucket) is below 10 and minutes from the cutover on, else from the stable table.
- canaryComparison at that step reads the canary's keys only (its per-window row counts are the
  canary hosts), and fails: the canary doubles every ``samples``.
- Rollback to 0 %: one view replace; every (host, minute) once, all from the stable table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from gatekit import PrestoData

from controller.adapters.hive import HiveAdapter
from controller.adapters.presto import PrestoClient
from controller.model.manifest import CanaryComparisonGate, Environment, PipelineRelease
from controller.model.reasons import Verdict
from controller.plan.actions import DiffContext, Op
from controller.plan.desired import RolloutInputs, StageContext, desired_resources
from controller.plan.keysplit import bucket_of
from controller.plan.planner import diff_resources
from controller.plan.resources import ResourceKind, ViewResource
from controller.rollout import bluegreen, keysteps
from controller.rollout.gates import GateContext, evaluate

pytestmark = pytest.mark.integration

HOSTS = [f"host-{i:02d}" for i in range(40)]
T0 = datetime(2026, 1, 1, 11, 0, tzinfo=UTC)
MINUTES, CANARY_FROM, CUTOVER = 10, 4, 5
NOW = T0 + timedelta(minutes=MINUTES + 1)


def release(version: str) -> PipelineRelease:
    return PipelineRelease.model_validate(
        {
            "apiVersion": "pipectl.dev/v1alpha1",
            "kind": "PipelineRelease",
            "metadata": {"name": "keyed"},
            "spec": {
                "version": version,
                "topics": [{"name": "tel.events", "partitions": 1, "replicationFactor": 1}],
                "tables": [
                    {
                        "name": "tel.m_1m",
                        "columns": [
                            {"name": "host", "type": "string"},
                            {"name": "window_start", "type": "timestamp"},
                            {"name": "samples", "type": "bigint"},
                            {"name": "src", "type": "string"},
                        ],
                    }
                ],
                "views": [{"name": "tel.m", "table": "tel.m_1m"}],
                "streamingJobs": [
                    {
                        "name": "agg",
                        "entrypoint": "jobs/agg.py",
                        "sources": [{"topic": "tel.events"}],
                        "sinks": [{"table": "tel.m_1m"}],
                        "strategy": "canary",
                        "keys": {"columns": ["host"], "steps": [10, 50, 100]},
                    }
                ],
                "rollout": {"stages": ["prod"]},
            },
        }
    )


def stage(uid: str) -> StageContext:
    env = Environment.model_validate(
        {
            "apiVersion": "pipectl.dev/v1alpha1",
            "kind": "Environment",
            "metadata": {"name": "prod"},
            "spec": {
                "kafka": {"bootstrapServers": "127.0.0.1:9092", "topicPrefix": f"it{uid}."},
                "hive": {"host": "127.0.0.1", "port": 10000, "databasePrefix": f"it{uid}_"},
                "presto": {"host": "127.0.0.1", "port": 8080, "catalog": "hive"},
                "airflow": {"url": "http://127.0.0.1:8089", "username": "admin", "passwordFrom": "env:X"},
                "spark": {"master": "local[1]"},
            },
        }
    )
    return StageContext("prod", env.spec)


def hive_side(version: str, ctx: StageContext, rollout: RolloutInputs | None = None) -> list[Any]:
    """The release's databases, tables and views at prod (Kafka topics and jobs left out)."""
    kinds = {ResourceKind.DATABASE, ResourceKind.TABLE, ResourceKind.VIEW}
    res = desired_resources(release(version), ctx, lambda _: b"", rollout=rollout)
    return [r for r in res if r.kind in kinds]


def converge(adapter: HiveAdapter, desired: list[Any]) -> list[Any]:
    """Apply the plan, then plan again: the live state read back must equal the desired state."""
    actions = diff_resources(desired, observe(adapter, desired), DiffContext())
    for a in actions:
        assert a.op is not Op.REFUSE and adapter.apply(a).changed, a.describe()
    assert diff_resources(desired, observe(adapter, desired), DiffContext()) == []
    return actions


def observe(adapter: HiveAdapter, desired: list[Any]) -> dict[tuple[str, str], Any]:
    live: dict[tuple[str, str], Any] = {}
    for kind in (ResourceKind.DATABASE, ResourceKind.TABLE, ResourceKind.VIEW):
        names = [d.name for d in desired if d.kind == kind]
        live.update({r.key: r for r in adapter.observe(kind, names).values()} if names else {})
    return live


@pytest.fixture
def world(
    stack: dict[str, Any], hive_conn: Callable[..., Any], unique_name: str
) -> Iterator[tuple[StageContext, HiveAdapter, PrestoClient]]:
    ctx = stage(unique_name)
    presto = PrestoClient(stack["presto_host"], int(stack["presto_port"]))
    adapter = HiveAdapter(stack["thrift_host"], int(stack["thrift_port"]), auth="NOSASL", presto=presto)
    cur = hive_conn().cursor()
    try:
        yield ctx, adapter, presto
    finally:
        cur.execute(f"DROP DATABASE IF EXISTS it{unique_name}_tel CASCADE")
        adapter.close()
        presto.close()


def insert(cur: Any, table: str, minutes: range, src: str, factor: int) -> None:
    values = ", ".join(
        f"('{h}', TIMESTAMP '{T0 + timedelta(minutes=m):%Y-%m-%d %H:%M:%S}', {factor * (10 + i)}, '{src}')"
        for m in minutes
        for i, h in enumerate(HOSTS)
    )
    cur.execute(f"INSERT INTO {table} VALUES {values}")


def serving(presto: PrestoClient, view: str) -> list[tuple[str, datetime, str]]:
    db, name = view.split(".")
    rows = presto.query(f'SELECT host, window_start, src FROM hive."{db}"."{name}"')
    return [(str(h), datetime.fromisoformat(str(w)[:19]).replace(tzinfo=UTC), str(s)) for h, w, s in rows]


def test_first_step_serves_each_key_window_once_from_its_side_and_rollback_goes_to_zero(
    world: tuple[StageContext, HiveAdapter, PrestoClient], hive_conn: Callable[..., Any]
) -> None:
    ctx, adapter, presto = world
    stable = hive_side("1.0.0", ctx)
    converge(adapter, stable)  # database, 1.0.0's table, the view on it
    canary_side = [r for r in hive_side("1.1.0", ctx) if r.kind == ResourceKind.TABLE]
    converge(adapter, canary_side)
    [view] = [r for r in stable if isinstance(r, ViewResource)]
    blue, green = view.target, canary_side[0].name
    cur = hive_conn().cursor()
    insert(cur, blue, range(MINUTES), "1.0.0", 1)
    insert(cur, green, range(CANARY_FROM, MINUTES), "1.1.0", 2)  # a defect: twice the samples

    # the first step, as the engine records it (the cutover: the minute green has complete)
    cutover = T0 + timedelta(minutes=CUTOVER)
    segments = bluegreen.next_segments({}, [("tel.m", blue, green)], cutover)
    keys = keysteps.canary_keys(release("1.1.0"))
    assert keys is not None
    step = keysteps.after_gates_passed(None, keys, "1.1.0", segments, NOW).state
    assert step is not None and step.percent == 10
    inputs = RolloutInputs(serving_version="1.0.0", key_splits=keysteps.splits(step, "1.1.0"))
    [replace] = converge(adapter, hive_side("1.1.0", ctx, inputs))
    assert (replace.kind, replace.op) == (ResourceKind.VIEW, Op.REPLACE)  # one CREATE OR REPLACE VIEW

    canary_hosts = {h for h in HOSTS if bucket_of([h]) < 10}
    print(f"canary hosts at 10 %: {len(canary_hosts)} of {len(HOSTS)}")
    assert 0 < len(canary_hosts) < len(HOSTS)
    rows = serving(presto, view.name)
    seen = Counter((h, w) for h, w, _ in rows)
    every = {(h, T0 + timedelta(minutes=m)) for h in HOSTS for m in range(MINUTES)}
    assert set(seen) == every and set(seen.values()) == {1}  # none missing, none twice
    for h, w, src in rows:
        want = "1.1.0" if h in canary_hosts and w >= cutover else "1.0.0"
        assert src == want, (h, w, src)

    # the gate at this step compares the canary's keys only, and sees the defect
    gate = CanaryComparisonGate.model_validate(
        {
            "name": "matches-baseline",
            "type": "canaryComparison",
            "keys": ["host"],
            "window": {"column": "window_start", "length": "1m"},
            "metrics": [{"column": "samples", "statistic": "relativeTotal", "threshold": 0.05}],
        }
    )
    gctx = GateContext(
        release=release("1.1.0"),
        stage="prod",
        stage_ctx=ctx,
        now=NOW,
        canary_tables={"tel.m_1m": green},
        baseline_tables={"tel.m_1m": blue},
        canary_keys=(("host",), step.percent),
    )
    v = evaluate(gate, gctx, PrestoData(presto))
    assert v.verdict is Verdict.FAIL, v.message
    counts = {n for _, n, *_ in presto.query(v.evidence["tables"][0]["canary_windows_sql"])}
    assert counts == {len(canary_hosts)}  # Presto's crc32 bucket is Python's

    # rollback: the step is dropped, the view serves every key from the stable version
    [back] = converge(adapter, hive_side("1.1.0", ctx, RolloutInputs(serving_version="1.0.0")))
    assert (back.kind, back.op) == (ResourceKind.VIEW, Op.REPLACE)
    rows = serving(presto, view.name)
    assert Counter((h, w) for h, w, _ in rows) == dict.fromkeys(every, 1)
    assert {src for _, _, src in rows} == {"1.0.0"}
