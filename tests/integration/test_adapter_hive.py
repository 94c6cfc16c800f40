"""Hive adapter against the real Spark Thrift Server, Hive metastore and PrestoDB of the local stack.

Every test works in its own database. Data is written, drift is made and state is checked with
plain pyhive connections (``hive_conn`` to the Thrift Server, ``presto_conn`` to Presto) outside
pipectl; plans come from the real diff rules.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from controller.adapters.hive import SPARK_VIEW, HiveAdapter
from controller.adapters.presto import PrestoClient
from controller.model.errors import PermanentBackendError
from controller.plan.actions import Action, DiffContext, Op, Reversibility
from controller.plan.planner import diff_resources
from controller.plan.resources import (
    Column,
    DatabaseResource,
    Migration,
    Owner,
    ResourceKind,
    TableResource,
    ViewResource,
    ViewSegment,
)

pytestmark = pytest.mark.integration

RELEASE = Owner(release="it-hive", version="1.0.0")
PROPS = {"pipectl.release": "it-hive", "pipectl.version": "1.0.0", "team": "observability, infra"}
COLUMNS = [
    Column(name="host", type="string"),
    Column(name="metric", type="string"),
    Column(name="window_start", type="timestamp"),
    Column(name="samples", type="bigint"),
    Column(name="n", type="int"),
    Column(name="code", type="varchar(8)"),
]
CHANGING = {
    "create_database",
    "drop_database",
    "create_table",
    "add_columns",
    "set_tblproperties",
    "drop_table",
    "presto.create_view",
    "presto.drop_view",
    "presto.drop_column",
    "presto.rename",
}


# --- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture
def presto(stack: dict[str, Any]) -> Iterator[PrestoClient]:
    client = PrestoClient(stack["presto_host"], int(stack["presto_port"]))
    yield client
    client.close()


@pytest.fixture
def adapter(stack: dict[str, Any], presto: PrestoClient) -> Iterator[HiveAdapter]:
    a = HiveAdapter(stack["thrift_host"], int(stack["thrift_port"]), auth="NOSASL", presto=presto)
    yield a
    a.close()


@pytest.fixture
def spark(hive_conn: Callable[..., Any]) -> Callable[[str], list[tuple[Any, ...]]]:
    """Run one statement on the Thrift Server with a plain pyhive connection (rows for queries)."""
    conn = hive_conn()

    def run(sql: str) -> list[tuple[Any, ...]]:
        cur = conn.cursor()
        cur.execute(sql)
        # pyhive raises on fetchall() after DDL and INSERT: only queries are fetched.
        if sql.split(None, 1)[0].upper() in {"SELECT", "SHOW", "DESCRIBE"}:
            return [tuple(r) for r in cur.fetchall()]
        return []

    return run


@pytest.fixture
def prestosql(presto_conn: Callable[..., Any]) -> Callable[[str], list[tuple[Any, ...]]]:
    """Run one statement on Presto with a plain pyhive presto connection."""
    conn = presto_conn()

    def run(sql: str) -> list[tuple[Any, ...]]:
        cur = conn.cursor()
        cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()]

    return run


@pytest.fixture
def db(unique_name: str, spark: Callable[[str], Any]) -> Iterator[str]:
    name = f"it_hive_{unique_name}"
    yield name
    spark(f"DROP DATABASE IF EXISTS `{name}` CASCADE")


def table(db: str, name: str = "metrics", **kw: Any) -> TableResource:
    spec: dict[str, Any] = {
        "name": f"{db}.{name}",
        "owner": RELEASE,
        "columns": COLUMNS,
        "partition_columns": [Column(name="dt", type="string")],
        "properties": PROPS,
    }
    spec.update(kw)
    return TableResource.model_validate(spec)


def view(db: str, target: str, name: str = "serving", **kw: Any) -> ViewResource:
    return ViewResource(name=f"{db}.{name}", owner=RELEASE, target=target, **kw)


def observe_all(adapter: HiveAdapter, desired: list[Any]) -> dict[tuple[str, str], Any]:
    live: dict[tuple[str, str], Any] = {}
    for kind in (ResourceKind.DATABASE, ResourceKind.TABLE, ResourceKind.VIEW):
        names = [d.name for d in desired if d.kind == kind]
        if names:
            live.update({r.key: r for r in adapter.observe(kind, names).values()})
    return live


def plan(adapter: HiveAdapter, desired: list[Any], ctx: DiffContext | None = None) -> list[Action]:
    return diff_resources(desired, observe_all(adapter, desired), ctx or DiffContext())


def converge(adapter: HiveAdapter, desired: list[Any]) -> list[Action]:
    actions = plan(adapter, desired)
    assert not [a for a in actions if a.op is Op.REFUSE], [a.describe() for a in actions]
    for a in actions:
        assert adapter.apply(a).changed, a.describe()
    assert plan(adapter, desired) == []
    return actions


def changing_calls(adapter: HiveAdapter) -> dict[str, int]:
    return {k: v for k, v in adapter.stats.calls.items() if k in CHANGING}


def tblproperties(spark: Callable[[str], list[tuple[Any, ...]]], name: str) -> dict[str, str]:
    db, t = name.split(".")
    return {str(k): str(v) for k, v in spark(f"SHOW TBLPROPERTIES `{db}`.`{t}`")}


def describe(spark: Callable[[str], list[tuple[Any, ...]]], name: str) -> list[tuple[str, str]]:
    db, t = name.split(".")
    rows = spark(f"DESCRIBE `{db}`.`{t}`")
    return [(str(r[0]), str(r[1])) for r in rows]


# --- tests --------------------------------------------------------------------------------------


def test_converge_then_reapply_is_noop_and_presto_reads_what_spark_writes(
    adapter: HiveAdapter,
    db: str,
    spark: Callable[[str], list[tuple[Any, ...]]],
    prestosql: Callable[[str], list[tuple[Any, ...]]],
) -> None:
    t = table(db)
    desired = [DatabaseResource(name=db, owner=RELEASE), t, view(db, t.name)]
    actions = converge(adapter, desired)
    assert [(a.op, a.kind) for a in actions] == [
        (Op.CREATE, ResourceKind.DATABASE),
        (Op.CREATE, ResourceKind.TABLE),
        (Op.CREATE, ResourceKind.VIEW),
    ]

    live = adapter.observe(ResourceKind.TABLE, [t.name])[t.name]
    assert isinstance(live, TableResource)
    assert live.columns == COLUMNS  # varchar(8) kept exactly (SHOW TABLE EXTENDED alone says string)
    assert live.partition_columns == [Column(name="dt", type="string")]
    assert live.format == "parquet"
    assert {k: live.properties[k] for k in PROPS} == PROPS  # a value with ", " read exactly
    assert live.owner == Owner(release="it-hive", version="1.0.0")
    served = adapter.observe(ResourceKind.VIEW, [f"{db}.serving"])[f"{db}.serving"]
    assert isinstance(served, ViewResource) and (served.target, served.columns) == (t.name, [])

    # Re-applying every action: nothing changes, on the backend either.
    ddl_time = tblproperties(spark, t.name)["transient_lastDdlTime"]
    view_sql = prestosql(f'SHOW CREATE VIEW hive."{db}"."serving"')
    adapter.stats.reset()
    for a in actions:
        assert adapter.apply(a).changed is False, a.describe()
    assert changing_calls(adapter) == {}
    assert tblproperties(spark, t.name)["transient_lastDdlTime"] == ddl_time
    assert prestosql(f'SHOW CREATE VIEW hive."{db}"."serving"') == view_sql

    # Written by Spark SQL through the Thrift Server, read by Presto: the table is a Hive table.
    spark(
        f"INSERT INTO `{db}`.`metrics` PARTITION (dt='2026-11-26') VALUES "
        "('h1', 'cpu', TIMESTAMP '2026-11-26 10:00:00', 3, 7, 'abc')"
    )
    row = ("h1", "cpu", 3, 7, "abc", "2026-11-26")
    cols = "host, metric, samples, n, code, dt"
    assert prestosql(f'SELECT {cols} FROM hive."{db}"."metrics"') == [row]
    assert prestosql(f'SELECT {cols} FROM hive."{db}"."serving"') == [row]

    # One observe pass of tables: one GetColumns plus one SHOW TABLE EXTENDED for the database.
    adapter.stats.reset()
    adapter.observe(ResourceKind.TABLE, [t.name, f"{db}.absent"])
    assert adapter.stats.calls == {"get_columns": 1, "show_table_extended": 1, "show_tblproperties": 1}
    adapter.stats.reset()
    adapter.observe(ResourceKind.DATABASE, [db, "it_hive_absent_db"])
    assert adapter.stats.calls == {"show_databases": 1}

    # The reconciler's pass asks for the three kinds together: tables and views share their reads.
    requests = {
        ResourceKind.DATABASE: [db, "it_hive_absent_db"],
        ResourceKind.TABLE: [t.name, f"{db}.absent"],
        ResourceKind.VIEW: [f"{db}.serving", f"{db}.absent_view"],
    }
    separate = {kind: adapter.observe(kind, names) for kind, names in requests.items()}
    assert set(separate[ResourceKind.VIEW]) == {f"{db}.serving"}
    adapter.stats.reset()
    assert adapter.observe_kinds(requests) == separate
    assert adapter.stats.calls == {
        "show_databases": 1, "get_columns": 1, "show_table_extended": 1, "show_tblproperties": 1,
    }


def test_views_are_made_by_presto_because_neither_engine_reads_the_others(
    adapter: HiveAdapter,
    db: str,
    spark: Callable[[str], list[tuple[Any, ...]]],
    prestosql: Callable[[str], list[tuple[Any, ...]]],
) -> None:
    t = table(db, columns=COLUMNS[:2], partition_columns=[])
    converge(adapter, [DatabaseResource(name=db), t, view(db, t.name)])

    with pytest.raises(Exception, match="INVALID_VIEW_TEXT"):
        spark(f"SELECT * FROM `{db}`.`serving`")  # Spark cannot read the Presto view

    spark(f"CREATE VIEW `{db}`.`spark_view` AS SELECT host FROM `{db}`.`metrics`")
    with pytest.raises(Exception, match="Hive views are not supported"):
        prestosql(f'SELECT * FROM hive."{db}"."spark_view"')

    # The Spark view is seen for what it is, and pipectl does not try to replace it.
    desired = view(db, t.name, name="spark_view")
    [replace] = plan(adapter, [desired])
    assert replace.op is Op.REPLACE and str(replace.changes[0]) == f"target: {SPARK_VIEW} → {t.name}"
    with pytest.raises(PermanentBackendError, match="created by Spark"):
        adapter.apply(replace)
    assert spark(f"SELECT count(*) FROM `{db}`.`spark_view`") == [(0,)]


def test_drift_made_outside_pipectl_is_detected_and_repaired(
    adapter: HiveAdapter,
    db: str,
    spark: Callable[[str], list[tuple[Any, ...]]],
    prestosql: Callable[[str], list[tuple[Any, ...]]],
) -> None:
    t = table(db)
    desired: list[Any] = [DatabaseResource(name=db), t, view(db, t.name)]
    converge(adapter, desired)

    # A property changed by hand.
    spark(f"ALTER TABLE `{db}`.`metrics` SET TBLPROPERTIES ('pipectl.version'='0.9.9', 'team'='none')")
    [update] = plan(adapter, desired)
    assert (update.op, update.reversibility) == (Op.UPDATE, Reversibility.REVERSIBLE)
    assert [str(c) for c in update.changes] == [
        "properties.pipectl.version: 0.9.9 → 1.0.0",
        "properties.team: none → observability, infra",
    ]
    assert adapter.apply(update).changed
    assert plan(adapter, desired) == []
    props = tblproperties(spark, t.name)
    assert (props["pipectl.version"], props["team"]) == ("1.0.0", "observability, infra")

    # The manifest gains a column: added at the end; the serving view keeps working meanwhile
    # (it lists its columns, so Presto does not call it stale) and is then re-listed.
    t2 = table(db, columns=[*COLUMNS, Column(name="max_value", type="double")])
    desired = [DatabaseResource(name=db), t2, view(db, t.name)]
    [add] = plan(adapter, desired)
    assert [str(c) for c in add.changes] == ["columns.max_value: (none) → double"]
    assert adapter.apply(add).changed
    assert ("max_value", "double") in describe(spark, t.name)
    assert prestosql(f'SELECT count(*) FROM hive."{db}"."serving"') == [(0,)]
    [relist] = plan(adapter, desired)
    assert relist.op is Op.REPLACE
    assert [str(c) for c in relist.changes] == [
        "columns: host, metric, window_start, samples, n, code, dt → *"
    ]
    assert adapter.apply(relist).changed
    assert prestosql(f'SELECT max(max_value) FROM hive."{db}"."serving"') == [(None,)]
    assert plan(adapter, desired) == []

    # A column added by hand is one the manifest would drop: refused, and nothing is touched.
    spark(f"ALTER TABLE `{db}`.`metrics` ADD COLUMNS (note string)")
    before = (describe(spark, t.name), tblproperties(spark, t.name))
    # (The all-column view would list the new column too; the refusal stops the whole plan.)
    refusal, relist = plan(adapter, desired)
    assert (relist.op, relist.kind) == (Op.REPLACE, ResourceKind.VIEW)
    assert (refusal.op, refusal.reason_code) == (Op.REFUSE, "ColumnDrop")
    assert [str(c) for c in refusal.changes] == ["columns.note: string → (none)"]
    with pytest.raises(PermanentBackendError, match="refused"):
        adapter.apply(refusal)
    assert (describe(spark, t.name), tblproperties(spark, t.name)) == before


def test_refusals_leave_the_table_untouched(
    adapter: HiveAdapter, db: str, spark: Callable[[str], list[tuple[Any, ...]]]
) -> None:
    t = table(db)
    converge(adapter, [DatabaseResource(name=db), t])
    before = (describe(spark, t.name), tblproperties(spark, t.name))

    # What Spark 3.5 itself says about a type change of a Hive table: the reason widening is refused.
    with pytest.raises(Exception, match="NOT_SUPPORTED_CHANGE_COLUMN"):
        spark(f"ALTER TABLE `{db}`.`metrics` CHANGE COLUMN n n BIGINT")

    def cols(*changes: tuple[str, str | None]) -> list[Column]:
        out = {c.name: c.type for c in COLUMNS}
        for name, typ in changes:
            if typ is None:
                out.pop(name)
            else:
                out[name] = typ
        return [Column(name=n, type=ty) for n, ty in out.items()]

    renamed = [Column(name="metric_name" if c.name == "metric" else c.name, type=c.type) for c in COLUMNS]
    cases = {
        "ColumnDrop": table(db, columns=cols(("code", None))),
        "ColumnTypeChange": table(db, columns=cols(("n", "bigint"))),
        "ColumnTypeNarrowing": table(db, columns=cols(("samples", "int"))),
        "ColumnRename": table(db, columns=renamed),
        "ColumnReorder": table(db, columns=[COLUMNS[1], COLUMNS[0], *COLUMNS[2:]]),
        "PartitionColumnsChange": table(db, partition_columns=[]),
        "TableFormatChange": table(db, format="orc"),
        "NotOwned": table(
            db,
            owner=Owner(release="someone-else", version="1.0.0"),
            properties={**PROPS, "pipectl.release": "someone-else"},
        ),
    }
    for code, desired in cases.items():
        [refusal] = plan(adapter, [desired])
        assert (refusal.op, refusal.reason_code) == (Op.REFUSE, code), refusal.describe()
        with pytest.raises(PermanentBackendError, match="refused"):
            adapter.apply(refusal)
    assert (describe(spark, t.name), tblproperties(spark, t.name)) == before

    # A declared drop is planned (destructive) and goes to Presto, the only engine with DROP COLUMN.
    declared = table(db, columns=cols(("code", None)), migrations=[Migration(op="drop", column="code")])
    [drop] = plan(adapter, [declared])
    assert (drop.op, drop.reversibility) == (Op.UPDATE, Reversibility.DESTRUCTIVE)
    try:
        adapter.apply(drop)
    except PermanentBackendError as e:
        # The local stack's Presto catalog does not set hive.allow-drop-column: nothing changes.
        assert "hive.allow-drop-column" in str(e)
        assert (describe(spark, t.name), tblproperties(spark, t.name)) == before
    else:
        assert "code" not in dict(describe(spark, t.name))
        assert plan(adapter, [declared]) == []


def test_view_switches_are_atomic_for_concurrent_presto_readers(
    adapter: HiveAdapter,
    db: str,
    spark: Callable[[str], list[tuple[Any, ...]]],
    presto_conn: Callable[..., Any],
) -> None:
    cols = [Column(name="window_start", type="timestamp"), Column(name="samples", type="bigint")]
    blue, green = (
        table(db, "blue", columns=cols, partition_columns=[]),
        table(db, "green", columns=cols, partition_columns=[]),
    )
    serving = view(db, blue.name)
    converge(adapter, [DatabaseResource(name=db), blue, green, serving])
    spark(
        f"INSERT INTO `{db}`.`blue` VALUES (TIMESTAMP '2026-11-26 10:00:00', 1), (TIMESTAMP '2026-11-26 13:00:00', 10)"
    )
    spark(
        f"INSERT INTO `{db}`.`green` VALUES (TIMESTAMP '2026-11-26 11:00:00', 100), (TIMESTAMP '2026-11-26 14:00:00', 1000)"
    )
    stitched = view(
        db,
        green.name,
        segments=[ViewSegment(table=blue.name), ViewSegment(table=green.name, since="2026-11-26 12:00:00")],
    )
    expected = {blue.name: 11, green.name: 1100, "stitched": 1 + 1000}

    seen: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        cur = presto_conn().cursor()
        while not stop.is_set():
            try:
                cur.execute(f'SELECT sum(samples) FROM hive."{db}"."serving"')
                seen.append(int(cur.fetchall()[0][0]))
            except Exception as e:
                errors.append(f"{type(e).__name__}: {e}")
            time.sleep(0.1)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        for desired, key in (
            (view(db, green.name), green.name),
            (stitched, "stitched"),
            (serving, blue.name),
        ):
            [replace] = plan(adapter, [desired])
            assert replace.op is Op.REPLACE
            assert adapter.apply(replace).changed
            assert plan(adapter, [desired]) == []
            deadline = time.monotonic() + 10
            while not seen or seen[-1] != expected[key]:
                assert time.monotonic() < deadline, f"reader never saw {key}"
                time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert errors == []
    assert set(seen) <= set(expected.values()) and set(seen) == set(expected.values())


def test_prune_deletes_only_with_approval(
    adapter: HiveAdapter, db: str, prestosql: Callable[[str], list[tuple[Any, ...]]]
) -> None:
    t = table(db, columns=COLUMNS[:2], partition_columns=[])
    desired: list[Any] = [DatabaseResource(name=db), t, view(db, t.name)]
    converge(adapter, desired)
    live = list(observe_all(adapter, desired).values())

    refused = diff_resources([], {}, DiffContext(prune=True), prune_candidates=live)
    assert [(a.op, a.reason_code, a.pending) for a in refused] == [(Op.DELETE, "DeleteNotApproved", True)] * 3
    for a in refused:  # awaiting approval: the adapter refuses to apply it
        with pytest.raises(PermanentBackendError):
            adapter.apply(a)
    assert len(observe_all(adapter, desired)) == 3

    approved = DiffContext(prune=True, allow_delete=frozenset(d.name for d in desired))
    deletes = diff_resources([], {}, approved, prune_candidates=live)
    assert [(a.op, a.kind) for a in deletes] == [
        (Op.DELETE, ResourceKind.VIEW),
        (Op.DELETE, ResourceKind.TABLE),
        (Op.DELETE, ResourceKind.DATABASE),
    ]
    for a in deletes:
        assert adapter.apply(a).changed
    assert observe_all(adapter, desired) == {}
    for a in deletes:
        assert adapter.apply(a).changed is False
    assert db not in {r[0] for r in prestosql("SHOW SCHEMAS FROM hive")}
