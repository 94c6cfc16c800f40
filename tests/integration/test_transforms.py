"""SQL transforms against the real stack: the example ``telemetry.host_metrics_daily`` transform of
``manifests/releases/host-metrics.yaml`` compiled for a unique dev-like stage, planned with the real
rules and materialized through Presto over a Hive/Parquet source table made with Hive DDL on the
Thrift Server.

Shown here: rows visible through Presto with the expected aggregates; re-applying is a no-op (same
rows, no new table); the next pass plans nothing; a new upstream version re-materializes into a new
table and swaps the view; a contract-breaking change is refused at plan and nothing changes; an
incremental transform overwrites only the partition a run names, the same again gives the same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.presto import PrestoClient
from controller.adapters.transforms import TransformAdapter
from controller.model.manifest import PipelineRelease
from controller.plan.actions import DiffContext, Op
from controller.plan.desired import StageContext, stage_context
from controller.plan.planner import diff_resources
from controller.plan.resources import ResourceKind, TransformResource
from controller.plan.transforms import transform_resources
from controller.source.validate import load_repo

pytestmark = pytest.mark.integration

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
DAILY = "telemetry.host_metrics_daily"

# host, metric, window_start, samples, avg_value, max_value, dt
ROWS_V1 = [
    ("h1", "cpu", "2026-01-01 00:00:00", 2, 1.0, 2.0, "2026-01-01"),
    ("h1", "cpu", "2026-01-01 00:01:00", 2, 3.0, 4.0, "2026-01-01"),
    ("h2", "cpu", "2026-01-01 00:00:00", 0, 9.0, 9.0, "2026-01-01"),  # no samples: filtered out
    ("h1", "cpu", "2026-01-02 00:00:00", 1, 5.0, 5.0, "2026-01-02"),
    ("h1", "mem", "2026-01-02 00:00:00", 4, 0.5, 1.0, "2026-01-02"),
]
# host, metric, day, samples, avg_value, max_value, dt
DAILY_V1 = [
    ("h1", "cpu", "2026-01-01", 4, 2.0, 4.0, "2026-01-01"),
    ("h1", "cpu", "2026-01-02", 1, 5.0, 5.0, "2026-01-02"),
    ("h1", "mem", "2026-01-02", 4, 0.5, 1.0, "2026-01-02"),
]
CONTRACT = [
    {"name": "host", "type": "string"},
    {"name": "metric", "type": "string"},
    {"name": "day", "type": "date"},
    {"name": "samples", "type": "bigint"},
    {"name": "avg_value", "type": "double"},
    {"name": "max_value", "type": "double"},
    {"name": "dt", "type": "string"},
]


# --- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture
def spark(hive_conn: Callable[..., Any]) -> Callable[[str], None]:
    conn = hive_conn()

    def run(sql: str) -> None:
        cur = conn.cursor()
        cur.execute(sql)

    return run


@pytest.fixture
def prestosql(presto_conn: Callable[..., Any]) -> Callable[[str], list[tuple[Any, ...]]]:
    conn = presto_conn()

    def run(sql: str) -> list[tuple[Any, ...]]:
        cur = conn.cursor()
        cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()]

    return run


@pytest.fixture
def stage(unique_name: str, spark: Callable[[str], None]) -> Iterator[StageContext]:
    """The dev stage of the example repository with a database prefix of its own."""
    snap = load_repo(MANIFESTS)
    envs = {n: snap.environment(n) for n in snap.environments}
    dev = stage_context("dev", envs)
    assert dev.spec.hive is not None
    prefix = f"it_{unique_name}_"
    hive = dev.spec.hive.model_copy(update={"database_prefix": prefix})
    ctx = StageContext(stage="dev", spec=dev.spec.model_copy(update={"hive": hive}))
    spark(f"CREATE DATABASE `{prefix}telemetry`")
    yield ctx
    spark(f"DROP DATABASE IF EXISTS `{prefix}telemetry` CASCADE")


@pytest.fixture
def adapter(stack: dict[str, Any]) -> Iterator[TransformAdapter]:
    client = PrestoClient(stack["presto_host"], int(stack["presto_port"]))
    yield TransformAdapter(client, upstream_wait=5.0, poll_interval=0.5)
    client.close()


def example(**transform: Any) -> PipelineRelease:
    rel = load_repo(MANIFESTS).release("host-metrics")
    if not transform:
        return rel
    data = rel.model_dump(by_alias=True)
    data["spec"]["transforms"][0].update(transform)
    return PipelineRelease.model_validate(data)


def read_from(overrides: dict[str, str] | None = None) -> Callable[[str], bytes]:
    def read(path: str) -> bytes:
        if overrides and path in overrides:
            return overrides[path].encode()
        return (MANIFESTS / path).read_bytes()

    return read


def source_table(
    spark: Callable[[str], None], prestosql: Callable[[str], Any], db: str, version: str, rows: list[Any]
) -> None:
    """The blue/green job's table for ``version`` (Hive DDL, Parquet) and the serving view on it."""
    t = f"`{db}`.`host_metrics_1m__{version}`"
    spark(
        f"CREATE TABLE {t} (host string, metric string, window_start timestamp, samples bigint, "
        "avg_value double, max_value double) PARTITIONED BY (dt string) STORED AS PARQUET"
    )
    insert_rows(spark, db, version, rows)
    prestosql(
        f'CREATE OR REPLACE VIEW hive."{db}"."host_metrics" AS SELECT host, metric, window_start, samples, '
        f'avg_value, max_value, dt FROM hive."{db}"."host_metrics_1m__{version}"'
    )


def insert_rows(spark: Callable[[str], None], db: str, version: str, rows: list[Any]) -> None:
    for dt in sorted({r[6] for r in rows}):
        values = ", ".join(
            f"('{h}', '{m}', TIMESTAMP '{ts}', {n}, {a}, {x})" for h, m, ts, n, a, x, d in rows if d == dt
        )
        spark(f"INSERT INTO `{db}`.`host_metrics_1m__{version}` PARTITION (dt = '{dt}') VALUES {values}")


def plan(adapter: TransformAdapter, desired: list[TransformResource]) -> list[Any]:
    live = {r.key: r for r in adapter.observe(ResourceKind.TRANSFORM, [d.name for d in desired]).values()}
    return diff_resources(desired, live, DiffContext())


def rows_of(prestosql: Callable[[str], Any], relation: str) -> list[tuple[Any, ...]]:
    db, name = relation.split(".")
    return sorted(
        (h, m, str(day), int(n), round(float(a), 6), float(x), dt)
        for h, m, day, n, a, x, dt in prestosql(
            f'SELECT host, metric, day, samples, avg_value, max_value, dt FROM hive."{db}"."{name}"'
        )
    )


def tables_like(prestosql: Callable[[str], Any], db: str, prefix: str) -> list[str]:
    return sorted(
        str(r[0]) for r in prestosql(f'SHOW TABLES FROM hive."{db}"') if str(r[0]).startswith(prefix)
    )


# --- the example transform -----------------------------------------------------------------------


def test_example_transform_materializes_idempotently_and_reruns_only_when_modified(
    stage: StageContext,
    adapter: TransformAdapter,
    spark: Callable[[str], None],
    prestosql: Callable[[str], Any],
) -> None:
    db = f"{stage.db_prefix}telemetry"
    source_table(spark, prestosql, db, "v1_0_0", ROWS_V1)
    [desired] = transform_resources(example(), stage, read_from())
    assert desired.name == f"{db}.host_metrics_daily"
    assert f'FROM "hive"."{db}"."host_metrics"' in str(desired.compiled_sql)

    # first pass: create; rows visible through Presto with the expected aggregates
    [action] = plan(adapter, [desired])
    assert (action.op, action.kind) == (Op.CREATE, ResourceKind.TRANSFORM)
    assert adapter.apply(action).changed
    assert rows_of(prestosql, desired.name) == DAILY_V1
    built = tables_like(prestosql, db, "host_metrics_daily__")
    assert built == [f"host_metrics_daily__{desired.digest[7:15]}"]

    # re-running the same action is a no-op: same rows, no new table
    assert not adapter.apply(action).changed
    assert rows_of(prestosql, desired.name) == DAILY_V1
    assert tables_like(prestosql, db, "host_metrics_daily__") == built

    # the next pass: nothing to do
    assert plan(adapter, transform_resources(example(), stage, read_from())) == []

    # a new upstream version (blue/green switch of the serving view): same SQL, new inputs → re-run
    v2 = [("h3", "cpu", "2026-01-03 00:00:00", 3, 1.0, 1.0, "2026-01-03")]
    source_table(spark, prestosql, db, "v1_1_0", v2)
    newer = example().model_copy(deep=True)
    data = newer.model_dump(by_alias=True)
    data["spec"]["version"] = "1.1.0"
    [desired2] = transform_resources(PipelineRelease.model_validate(data), stage, read_from())
    assert desired2.compiled_sql_digest == desired.compiled_sql_digest
    [update] = plan(adapter, [desired2])
    assert update.op is Op.UPDATE
    assert update.reason == "upstream telemetry.host_metrics_1m changed to v1_1_0; re-materialize"
    assert adapter.apply(update).changed
    assert rows_of(prestosql, desired.name) == [("h3", "cpu", "2026-01-03", 3, 1.0, 1.0, "2026-01-03")]
    # the previous materialization is kept beside the new one (going back is a view swap)
    assert tables_like(prestosql, db, "host_metrics_daily__") == sorted(
        [*built, f"host_metrics_daily__{desired2.digest[7:15]}"]
    )
    assert plan(adapter, [desired2]) == []


def test_a_contract_breaking_change_is_refused_at_plan_and_changes_nothing(
    stage: StageContext,
    adapter: TransformAdapter,
    spark: Callable[[str], None],
    prestosql: Callable[[str], Any],
) -> None:
    db = f"{stage.db_prefix}telemetry"
    source_table(spark, prestosql, db, "v1_0_0", ROWS_V1)
    [desired] = transform_resources(example(columns=CONTRACT), stage, read_from())
    assert desired.contract_breaks == []
    [create] = plan(adapter, [desired])
    adapter.apply(create)

    sql = (MANIFESTS / "transforms/host_metrics_daily.sql").read_text()
    broken_sql = sql.replace("SUM(samples) AS samples", "CAST(SUM(samples) AS double) AS samples")
    assert broken_sql != sql
    [broken] = transform_resources(
        example(columns=CONTRACT), stage, read_from({"transforms/host_metrics_daily.sql": broken_sql})
    )
    [refusal] = plan(adapter, [broken])
    assert (refusal.op, refusal.reason_code) == (Op.REFUSE, "ContractBroken")
    assert (
        "column samples is declared bigint in the contract of telemetry.host_metrics_daily" in refusal.reason
    )
    assert "telemetry.host_metrics_1m.samples" in refusal.reason
    # nothing was applied: the live transform is still the first one
    live = adapter.observe(ResourceKind.TRANSFORM, [desired.name])[desired.name]
    assert isinstance(live, TransformResource) and live.digest == desired.digest
    assert rows_of(prestosql, desired.name) == DAILY_V1


def test_incremental_runs_overwrite_only_their_partition(
    stage: StageContext,
    adapter: TransformAdapter,
    spark: Callable[[str], None],
    prestosql: Callable[[str], Any],
) -> None:
    db = f"{stage.db_prefix}telemetry"
    source_table(spark, prestosql, db, "v1_0_0", ROWS_V1)
    rel = example(materialized="incremental", partitionBy=["dt"])
    [desired] = transform_resources(rel, stage, read_from())
    [create] = plan(adapter, [desired])
    adapter.apply(create)
    assert rows_of(prestosql, desired.name) == DAILY_V1
    live = adapter.observe(ResourceKind.TRANSFORM, [desired.name])[desired.name]
    assert isinstance(live, TransformResource) and live.partitions == ["2026-01-01", "2026-01-02"]

    # late data for both days upstream; a run for 2026-01-02 rewrites that day only
    insert_rows(
        spark,
        db,
        "v1_0_0",
        [
            ("h1", "cpu", "2026-01-01 00:05:00", 4, 2.0, 2.0, "2026-01-01"),
            ("h1", "cpu", "2026-01-02 00:05:00", 3, 1.0, 7.0, "2026-01-02"),
        ],
    )
    result = adapter.run_incremental(
        desired.name, "2026-01-02", expect_sql_digest=desired.compiled_sql_digest
    )
    assert result.rows == 2
    expected = [
        ("h1", "cpu", "2026-01-01", 4, 2.0, 4.0, "2026-01-01"),  # untouched: no run for that day
        ("h1", "cpu", "2026-01-02", 4, 2.0, 7.0, "2026-01-02"),  # (1*5 + 3*1) / 4
        ("h1", "mem", "2026-01-02", 4, 0.5, 1.0, "2026-01-02"),
    ]
    assert rows_of(prestosql, desired.name) == expected
    # retrying the same run gives the same rows (no duplicates)
    adapter.run_incremental(desired.name, "dt=2026-01-02")
    assert rows_of(prestosql, desired.name) == expected
    # the controller still plans nothing: runs do not change the materialization
    assert plan(adapter, [desired]) == []


def test_view_transforms_and_names_held_by_others(
    stage: StageContext,
    adapter: TransformAdapter,
    spark: Callable[[str], None],
    prestosql: Callable[[str], Any],
) -> None:
    db = f"{stage.db_prefix}telemetry"
    source_table(spark, prestosql, db, "v1_0_0", ROWS_V1)
    [desired] = transform_resources(example(materialized="view"), stage, read_from())
    [create] = plan(adapter, [desired])
    assert adapter.apply(create).changed
    assert rows_of(prestosql, desired.name) == DAILY_V1
    assert tables_like(prestosql, db, "host_metrics_daily__") == []
    assert plan(adapter, [desired]) == []
    # new rows upstream show at once through a view transform
    insert_rows(spark, db, "v1_0_0", [("h9", "io", "2026-01-05 00:00:00", 1, 1.0, 1.0, "2026-01-05")])
    assert ("h9", "io", "2026-01-05", 1, 1.0, 1.0, "2026-01-05") in rows_of(prestosql, desired.name)

    # a plain table holding a transform's name is refused, never replaced
    spark(f"CREATE TABLE `{db}`.`host_metrics_hourly` (x int) STORED AS PARQUET")
    foreign = desired.model_copy(update={"name": f"{db}.host_metrics_hourly"})
    [refusal] = plan(adapter, [foreign])
    assert (refusal.op, refusal.reason_code) == (Op.REFUSE, "NotOwned")


def test_the_dag_entrypoint_runs_a_partition_of_what_the_controller_built(
    stage: StageContext,
    adapter: TransformAdapter,
    spark: Callable[[str], None],
    prestosql: Callable[[str], Any],
    tmp_path: Path,
) -> None:
    """``pipectl transform run RELEASE --stage S --partition D``: what the release's DAG calls."""
    import json
    import shutil

    from typer.testing import CliRunner

    from controller.cli.transform import app

    db = f"{stage.db_prefix}telemetry"
    source_table(spark, prestosql, db, "v1_0_0", ROWS_V1)
    repo = tmp_path / "repo"
    shutil.copytree(MANIFESTS, repo)
    dev = repo / "environments" / "dev.yaml"
    dev.write_text(dev.read_text().replace('databasePrefix: "dev_"', f'databasePrefix: "{stage.db_prefix}"'))
    rel_file = repo / "releases" / "host-metrics.yaml"
    rel_file.write_text(
        rel_file.read_text().replace(
            "      materialized: table\n", "      materialized: incremental\n      partitionBy: [dt]\n"
        )
    )
    rel = load_repo(repo).release("host-metrics")
    [desired] = transform_resources(rel, stage, lambda p: (repo / p).read_bytes())
    adapter.apply(plan(adapter, [desired])[0])

    insert_rows(spark, db, "v1_0_0", [("h1", "mem", "2026-01-02 00:09:00", 4, 1.5, 3.0, "2026-01-02")])
    args = ["run", "host-metrics", "--stage", "dev", "--partition", "2026-01-02", "--repo", str(repo)]
    for _ in range(2):  # a retried run gives the same rows
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.output
        out = json.loads(r.output.strip().splitlines()[-1])
        assert (out["partition"], out["rows"], out["digest"]) == ("2026-01-02", 2, desired.digest)
        assert ("h1", "mem", "2026-01-02", 8, 1.0, 3.0, "2026-01-02") in rows_of(prestosql, desired.name)

    # the repo's SQL changed but the controller has not materialized it yet: the run refuses
    sql_file = repo / "transforms" / "host_metrics_daily.sql"
    sql_file.write_text(sql_file.read_text().replace("WHERE samples > 0", "WHERE samples > 1"))
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1 and "has not materialized the current SQL yet" in r.output
