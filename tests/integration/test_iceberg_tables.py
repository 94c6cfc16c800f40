"""A release with an Apache Iceberg table (``format: iceberg``) on the real local stack: the
manifest's desired state (``controller.plan.desired``), the real diff rules and the Hive adapter
create it with hidden partitioning and a serving view; rows are written through the Spark Thrift
Server; the next release version renames and widens columns (schema evolution by field id); Presto
reads the old and the new rows through the view (recreated by the same apply: Presto fails a view
whose stored columns changed) and the ``iceberg`` catalog, and the table's
snapshots show that nothing was rewritten or deleted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from controller.adapters.hive import HiveAdapter
from controller.adapters.presto import PrestoClient
from controller.model.manifest import EnvironmentSpec, PipelineRelease
from controller.plan.actions import DiffContext, Op, Reversibility
from controller.plan.desired import StageContext, desired_resources
from controller.plan.planner import diff_resources
from controller.plan.resources import ResourceKind, TableResource

pytestmark = pytest.mark.integration


def _release(
    db: str, version: str, columns: list[dict[str, str]], migrations: list[dict[str, str]], key: str = "host"
) -> PipelineRelease:
    return PipelineRelease.model_validate(
        {
            "apiVersion": "pipectl.dev/v1alpha1",
            "kind": "PipelineRelease",
            "metadata": {"name": "it-iceberg"},
            "spec": {
                "version": version,
                "owner": "it",
                "tables": [
                    {
                        "name": f"{db}.events_1m",
                        "format": "iceberg",
                        "columns": columns,
                        "partitioning": ["days(window_start)", f"bucket(4, {key})"],
                        "properties": {"format-version": "2"},
                        "migrations": migrations,
                    }
                ],
                "views": [{"name": f"{db}.events", "table": f"{db}.events_1m"}],
            },
        }
    )


V1 = [
    {"name": "window_start", "type": "timestamp"},
    {"name": "host", "type": "string"},
    {"name": "samples", "type": "int"},
    {"name": "avg_value", "type": "float"},
]
V2 = [
    {"name": "window_start", "type": "timestamp"},
    {"name": "hostname", "type": "string"},
    {"name": "samples", "type": "bigint"},
    {"name": "avg_value", "type": "double"},
]


@pytest.fixture
def env(stack: dict[str, Any]) -> Iterator[tuple[HiveAdapter, PrestoClient, StageContext]]:
    presto = PrestoClient(stack["presto_host"], int(stack["presto_port"]))
    adapter = HiveAdapter(stack["thrift_host"], int(stack["thrift_port"]), auth="NOSASL", presto=presto)
    ctx = StageContext(
        stage="dev",
        spec=EnvironmentSpec.model_validate(
            {
                "hive": {
                    "host": stack["thrift_host"],
                    "port": int(stack["thrift_port"]),
                    "databasePrefix": "itice_",
                },
                "presto": {
                    "host": stack["presto_host"],
                    "port": int(stack["presto_port"]),
                    "catalog": "hive",
                },
                "kafka": {"bootstrapServers": stack["kafka_bootstrap"]},
                "airflow": {
                    "url": stack["airflow_url"],
                    "username": "admin",
                    "passwordFrom": "env:PIPECTL_AIRFLOW_PASSWORD",
                },
                "spark": {"master": "local[2]"},
            }
        ),
    )
    yield adapter, presto, ctx
    adapter.close()
    presto.close()


def _reconcile(adapter: HiveAdapter, release: PipelineRelease, ctx: StageContext) -> list[Any]:
    """One plan-and-apply pass over the release's databases, tables and views, like the executor's."""
    desired = [
        r
        for r in desired_resources(release, ctx, lambda _p: b"")
        if r.kind in (ResourceKind.DATABASE, ResourceKind.TABLE, ResourceKind.VIEW)
    ]
    live = {}
    for kind in (ResourceKind.DATABASE, ResourceKind.TABLE, ResourceKind.VIEW):
        names = [r.name for r in desired if r.kind == kind]
        live.update({r.key: r for r in adapter.observe(kind, names).values()})
    actions = diff_resources(desired, live, DiffContext())
    for a in actions:
        assert a.op is not Op.REFUSE, a.reason
        adapter.apply(a)
    return actions


def test_iceberg_table_renamed_and_widened_through_a_release(
    env: tuple[HiveAdapter, PrestoClient, StageContext], hive_conn: Callable[..., Any], unique_name: str
) -> None:
    adapter, presto, ctx = env
    db = f"iceberg_{unique_name}"
    phys, view = f"itice_{db}.events_1m", f"itice_{db}.events"
    spark = hive_conn().cursor()
    try:
        first = _reconcile(adapter, _release(db, "1.0.0", V1, []), ctx)
        assert [(str(a.kind), str(a.op)) for a in first] == [
            ("Database", "create"),
            ("Table", "create"),
            ("View", "create"),
        ]
        live = _observed(adapter, phys)
        assert (live.format, live.partitioning) == ("iceberg", ["days(window_start)", "bucket(4, host)"])
        assert [(c.name, c.type) for c in live.columns] == [(c["name"], c["type"]) for c in V1]
        assert _reconcile(adapter, _release(db, "1.0.0", V1, []), ctx) == []  # converged: no drift

        spark.execute(
            f"INSERT INTO iceberg.itice_{db}.events_1m VALUES "
            "(TIMESTAMP_NTZ '2026-12-01 10:00:00', 'a', 7, 1.5), "
            "(TIMESTAMP_NTZ '2026-12-02 11:00:00', 'b', 8, 2.5)"
        )

        change = _reconcile(
            adapter,
            _release(
                db,
                "1.1.0",
                V2,
                [{"op": "rename", "column": "host", "to": "hostname", "reason": "clearer name"}],
                key="hostname",
            ),
            ctx,
        )
        update = [a for a in change if a.kind is ResourceKind.TABLE]
        assert len(update) == 1 and update[0].op is Op.UPDATE
        assert update[0].reversibility is Reversibility.IRREVERSIBLE  # the promotions cannot be undone
        assert [str(c) for c in update[0].changes if c.field.startswith("columns")] == [
            "columns.host.name: host → hostname",
            "columns.samples.type: int → bigint",
            "columns.avg_value.type: float → double",
        ]
        live = _observed(adapter, phys)
        assert [(c.name, c.type) for c in live.columns] == [(c["name"], c["type"]) for c in V2]
        # the bucket transform follows its column by field id
        assert live.partitioning == ["days(window_start)", "bucket(4, hostname)"]

        spark.execute(
            f"INSERT INTO iceberg.itice_{db}.events_1m VALUES "
            "(TIMESTAMP_NTZ '2026-12-03 12:00:00', 'c', 20000000000, 3.25)"
        )

        # Presto: old rows under the new names and types, beside the new row, through the serving
        # view (catalog hive, selecting from iceberg.…) and the iceberg catalog directly.
        want = [("a", 7, 1.5), ("b", 8, 2.5), ("c", 20000000000, 3.25)]
        via_view = presto.query(f"SELECT hostname, samples, avg_value FROM hive.{view} ORDER BY 1")
        direct = presto.query(
            f"SELECT hostname, samples, avg_value FROM iceberg.itice_{db}.events_1m ORDER BY 1"
        )
        assert [tuple(r) for r in via_view] == want
        assert [tuple(r) for r in direct] == want
        # The view listed the old names and types (Presto fails such a view as stale): the table's
        # update recreated it in the same pass, so the next pass has nothing to do.
        assert _reconcile(adapter, _release(db, "1.1.0", V2, [], key="hostname"), ctx) == []

        # No data rewritten: three append snapshots, no file deleted or replaced, and the first
        # snapshot's data files are still the current snapshot's.
        snaps = presto.query(
            f'SELECT operation, summary FROM iceberg.itice_{db}."events_1m$snapshots" ORDER BY committed_at'
        )
        assert [r[0] for r in snaps] == ["append", "append"]
        for _, summary in snaps:
            s = json.loads(summary) if isinstance(summary, str) else dict(summary)
            assert int(s.get("deleted-data-files", 0)) == 0 and int(s.get("removed-files-size", 0)) == 0
        files = {r[0] for r in presto.query(f'SELECT file_path FROM iceberg.itice_{db}."events_1m$files"')}
        spark.execute(
            f"SELECT file_path FROM iceberg.itice_{db}.events_1m.files "
            f"VERSION AS OF {_first_snapshot(spark, db)}"
        )
        assert {r[0] for r in spark.fetchall()} <= files
    finally:
        for sql in (f"DROP VIEW IF EXISTS hive.{view}",):
            try:
                presto.execute(sql)
            except Exception:  # cleanup only
                pass
        spark.execute(f"DROP TABLE IF EXISTS iceberg.itice_{db}.events_1m PURGE")
        spark.execute(f"DROP DATABASE IF EXISTS itice_{db} CASCADE")


def _observed(adapter: HiveAdapter, name: str) -> TableResource:
    table = adapter.observe(ResourceKind.TABLE, [name])[name]
    assert isinstance(table, TableResource)
    return table


def _first_snapshot(spark: Any, db: str) -> int:
    spark.execute(
        f"SELECT snapshot_id FROM iceberg.itice_{db}.events_1m.snapshots ORDER BY committed_at LIMIT 1"
    )
    return int(spark.fetchall()[0][0])
