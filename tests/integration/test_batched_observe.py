"""Batched observation against the real stack (issue #17): the pass-wide snapshot
(``controller.engine.snapshot``) reads the same live state as each release's own reads, and the
backend calls of a no-op pass do not grow with the number of releases, except per Hive database.

Three small releases on one ``dev`` stage: ``a`` (topic with a config, database, table, view, DAG),
``b`` (topic, DAG; no database) and ``c`` (topic, its own database, table, view).

Run twice: with the Hive SQL path (``SHOW TABLE EXTENDED`` through the Thrift Server) and with the
environment's ``hive.metastoreUri`` (the pass reads each database from the metastore's Thrift API,
``controller.adapters.hive_metastore``). With the metastore the per-release reads stay on the SQL
path, so the first check compares the two paths. With the metastore a no-op pass reads no database
at all: the snapshot asks the metastore's notification log what changed (one call) and keeps the
rest; a property changed behind pipectl's back is seen through it and repaired. A database of tables no release declares (Hive
parquet partitioned or not, types the text output mangles, a property value with ", ", a Spark
datasource table, an Iceberg table) and their Presto views is compared path against path too.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.hive import HiveAdapter
from controller.adapters.presto import PrestoClient
from controller.engine.controller import Controller
from controller.engine.snapshot import LiveSnapshot
from controller.engine.stage_ops import StageOps
from controller.plan.desired import RolloutInputs, stage_context
from controller.plan.resources import ResourceKind, TableResource
from controller.wiring import build_runtime
from tests.integration import ctlkit


def _release(name: str, uid: str, *, db: str | None, dag: bool) -> str:
    hive = ""
    if db:
        hive = f"""\
  tables:
    - name: {db}.counts
      columns: [{{name: k, type: string}}, {{name: code, type: "varchar(8)"}}, {{name: n, type: bigint}}]
      partitionedBy: [{{name: dt, type: string}}]
      properties: {{team: it}}
  views:
    - {{name: {db}.counts_v, table: {db}.counts}}
"""
    dags = f"  dags:\n    - {{id: {uid}_{name}_daily, path: dags/{uid}_{name}_daily.py}}\n" if dag else ""
    return f"""\
apiVersion: pipectl.dev/v1alpha1
kind: PipelineRelease
metadata:
  name: {name}
spec:
  version: 1.0.0
  topics:
    - {{name: {name}.events, partitions: 2, replicationFactor: 1, config: {{retention.ms: "3600000"}}}}
{hive}{dags}  rollout:
    stages: [dev]
"""


@pytest.mark.parametrize("metastore", [False, True], ids=["sql", "metastore"])
def test_batched_reads_equal_per_release_reads_and_calls_do_not_grow(
    stack: dict[str, Any], unique_name: str, tmp_path: Path, metastore: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whole-scope reads whatever the broker holds: with 1,000 topics of other runs on it, a pass
    # over these few releases would read their own topics instead (``engine.snapshot``'s narrow
    # reads, tests/unit/engine/test_snapshot.py), and the count below would depend on the broker.
    monkeypatch.setattr("controller.engine.snapshot.NARROW_MIN", 10**9)
    uid = unique_name
    dags_folder = str(stack["airflow_dags_folder"])
    env = ctlkit.stage_env_yaml("dev", f"it{uid}.", f"it{uid}_", dags_folder)
    if metastore:
        prefix = f'databasePrefix: "it{uid}_"'
        assert prefix in env
        env = env.replace(prefix, f'{prefix}, metastoreUri: "{stack["metastore_uri"]}"')
    files = {
        "environments/dev.yaml": env,
        "releases/a.yaml": _release("a", uid, db="sa", dag=True),
        "releases/b.yaml": _release("b", uid, db=None, dag=True),
        "releases/c.yaml": _release("c", uid, db="sc", dag=False),
        f"dags/{uid}_a_daily.py": ctlkit.DAG_SOURCE,
        f"dags/{uid}_b_daily.py": ctlkit.DAG_SOURCE,
    }
    repo = ctlkit.init_repo(tmp_path, files, "three releases")
    rt = build_runtime(str(repo), f"sqlite:///{tmp_path / 'state.db'}", bake_seconds=0, share_live_state=True)
    ctl = Controller(rt.source, rt.reconciler, interval=3600)
    names = ["a", "b", "c"]
    try:
        snap = ctl.snapshot()
        ctx = stage_context("dev", {n: snap.environment(n) for n in snap.environments})
        be = rt.wiring.backends(ctx, repo)

        def phase(name: str) -> str:
            return str(ctlkit.stage_status(tmp_path / "state.db", name, "dev").get("phase", "-"))

        deadline = time.monotonic() + 300
        while any(phase(n) != "Succeeded" for n in names):
            assert time.monotonic() < deadline, {n: phase(n) for n in names}
            assert not {phase(n) for n in names} & {"Failed", "Invalid"}, {n: phase(n) for n in names}
            for n in names:
                ctl.trigger(n)
            ctl.run_once()
            time.sleep(1)  # the test's own pacing between passes, not a worker's wait

        # 1. the snapshot's answers equal each release's own reads (the pre-#17 path)
        ops = rt.reconciler.ops
        fresh = LiveSnapshot(ops.clock, StageOps.observe_adapters)
        compared = 0
        for n in names:
            rel = snap.release(n)
            desired = ops.desired(rel, ctx, RolloutInputs(serving_version="1.0.0"), snap.commit)
            own = StageOps.observe(be, desired)
            batched = fresh.observe(be.adapters, desired)
            assert batched == own, n
            assert len(own) == len(desired), (n, sorted(own))  # converged: every resource is there
            compared += len(own)
        assert compared == 11  # a: 5, b: 2, c: 4

        # 2. backend calls of a no-op pass: the same for 1 and 2 releases without a new database,
        #    and only the new database's reads more for the third
        def noop_pass(over: list[str]) -> dict[str, int]:
            runs = {n: len(rt.store.history(n)) for n in names}
            for n in over:
                ctl.trigger(n)
            be.reset_calls()
            ctl.run_once()
            calls = be.calls()
            # Opening a metastore connection is not a read: the prefetch reads databases on several
            # threads, and whether a second connection is opened depends on their timing (one is
            # kept idle per thread that ran at once), so connections are bounded, not counted.
            connects = be.call_detail()["hive"].get("hms.connect", 0)
            assert connects <= 4, connects  # MetastoreClient's connection slots
            calls["hive"] -= connects
            for n in over:
                assert rt.reconciler.last_plans[(n, "dev")].is_noop, n
            assert {n: len(rt.store.history(n)) for n in names} == runs  # nothing applied
            return calls

        noop_pass(names)  # warm-up: the fast path remembers each converged pass
        one, two, three = noop_pass(["a"]), noop_pass(["a", "b"]), noop_pass(names)
        assert one == two, (one, two)
        assert {k: v for k, v in three.items() if k != "hive"} == {k: v for k, v in one.items() if k != "hive"}
        assert one["kafka"] == 2 and one["airflow"] >= 1, one  # one describe, one describe_configs
        hive_ops = {k: v for k, v in be.call_detail()["hive"].items() if k != "hms.connect"}
        print(f"no-op pass calls: 1 release {one}, 2 releases {two}, 3 releases {three}; hive {hive_ops}")
        if not metastore:  # sc: GetColumns + SHOW TABLE EXTENDED
            assert three["hive"] - one["hive"] == 2, (one, three)
        else:
            # the watch (the metastore's notification log, engine.snapshot.ScopeWatcher): nothing
            # changed since the last pass, so no database is read, whatever the number of releases
            assert one["hive"] == three["hive"] == 1 and hive_ops == {"hms.get_next_notification": 1}, hive_ops
            hive = be.adapters[ResourceKind.TABLE]
            rt.reconciler.ops.live.invalidate(hive)  # forget what the watch kept: read as a first pass
            noop_pass(names)
            hive_ops = {k: v for k, v in be.call_detail()["hive"].items() if k != "hms.connect"}
            # the database list, one listing of every database, 1 call per database
            assert hive_ops == {
                "hms.get_next_notification": 1,
                "hms.get_all_databases": 1,
                "hms.get_table_meta": 1,
                "hms.get_table_objects_by_name": 2,
            }, hive_ops
            _drift_behind_pipectl_is_seen_through_the_watch(stack, rt, ctl, be, uid)

        if metastore:
            _metastore_path_equals_sql_path(stack, be.hive, uid)
    finally:
        dbs = [f"it{uid}_sa", f"it{uid}_sc", f"it{uid}_sx"]
        ctlkit.drop_everything(uid, dbs, dags_folder, f"{uid}_*")


def _drift_behind_pipectl_is_seen_through_the_watch(
    stack: dict[str, Any], rt: Any, ctl: Controller, be: Any, uid: str
) -> None:
    """A table property changed through the Thrift Server (not through pipectl) is in the
    metastore's notification log: the next pass reads that database again, and only it, and
    plans the repair."""
    sql = HiveAdapter(str(stack["thrift_host"]), int(stack["thrift_port"]), auth="NOSASL")
    try:
        sql._execute(f"ALTER TABLE it{uid}_sa.counts SET TBLPROPERTIES ('team'='drifted')", "drift")
    finally:
        sql.close()
    ctl.trigger("a")
    be.reset_calls()
    ctl.run_once()
    hive_ops = {k: v for k, v in be.call_detail()["hive"].items() if k != "hms.connect"}
    assert hive_ops.get("hms.get_next_notification") == 1, hive_ops
    assert hive_ops.get("hms.get_table_objects_by_name") == 1, hive_ops  # sa only, not sc
    plan = rt.reconciler.last_plans[("a", "dev")]
    assert any(a.name == f"it{uid}_sa.counts" for a in plan.actions), plan.actions
    live = be.adapters[ResourceKind.TABLE].observe(ResourceKind.TABLE, [f"it{uid}_sa.counts"])
    assert live[f"it{uid}_sa.counts"].properties["team"] == "it", live  # repaired


def _metastore_path_equals_sql_path(stack: dict[str, Any], hive: HiveAdapter, uid: str) -> None:
    """observe_scope of each database, metastore path against SQL path, on the same live state."""
    assert hive.metastore is not None
    db = f"it{uid}_sx"
    presto = PrestoClient(str(stack["presto_host"]), int(stack["presto_port"]))
    sql = HiveAdapter(str(stack["thrift_host"]), int(stack["thrift_port"]), auth="NOSASL", presto=presto)
    try:
        for statement in (
            f"CREATE DATABASE {db}",
            f"CREATE TABLE {db}.parts (k string, code varchar(8), amount decimal(10,2), "
            "tags struct<a:int,b:string>, xs array<bigint>) PARTITIONED BY (dt string, hour int) "
            "STORED AS PARQUET TBLPROPERTIES ('pipectl.release'='x', 'team'='it')",
            f"CREATE TABLE {db}.flat (k string, n bigint) STORED AS PARQUET "
            "TBLPROPERTIES ('note'='a, b', 'zeta'='z')",
            f"CREATE TABLE {db}.ds (k string, n bigint, dt string) USING json PARTITIONED BY (dt)",
            f"CREATE TABLE iceberg.{db}.ice (k bigint, ts timestamp_ntz) USING iceberg PARTITIONED BY (days(ts))",
        ):
            sql._execute(statement, "setup")
        presto.execute(f'CREATE VIEW hive.{db}.parts_v AS SELECT "k", "dt" FROM hive.{db}.parts')
        presto.execute(f'CREATE VIEW hive.{db}.flat_all AS SELECT "k", "n" FROM hive.{db}.flat "pipectl_all"')
        flat_key = (ResourceKind.TABLE, f"{db}.flat")
        for scope in (f"db:{db}", f"db:it{uid}_sa", f"db:it{uid}_sc", f"db:it{uid}_nosuchdb"):
            from_metastore, from_sql = hive.observe_scope(scope), sql.observe_scope(scope)
            listed = hive.list_scopes([scope, "databases"])  # as the prefetch lists, then reads
            assert listed is not None and set(listed) == {scope}
            assert hive.observe_scope_with(scope, listed[scope]) == from_metastore, scope
            if flat_key in from_sql:
                # The one difference: the SQL path cannot parse flat's property list (a value holds
                # ", ") and reads it with SHOW TBLPROPERTIES, which adds the storage properties as
                # option.*; the metastore gives the table's own properties either way.
                t = from_sql[flat_key]
                assert isinstance(t, TableResource) and t.properties["option.serialization.format"] == "1"
                props = {k: v for k, v in t.properties.items() if not k.startswith("option.")}
                from_sql[flat_key] = t.model_copy(update={"properties": props})
            assert from_metastore == from_sql, scope
        got = hive.observe_scope(f"db:{db}")
        assert {n for _, n in got} == {f"{db}.{t}" for t in ("parts", "flat", "ds", "ice", "parts_v", "flat_all")}
        flat = got[flat_key]
        assert isinstance(flat, TableResource) and (flat.properties["note"], flat.properties["zeta"]) == ("a, b", "z")
        ice = got[(ResourceKind.TABLE, f"{db}.ice")]
        assert isinstance(ice, TableResource) and ice.partitioning == ["days(ts)"]
        ours = {f"it{uid}_sa", f"it{uid}_sc", db, "default"}
        dbs = {k for k in hive.observe_scope("databases") if k[1] in ours}
        assert dbs == {k for k in sql.observe_scope("databases") if k[1] in ours} and len(dbs) == 4
    finally:
        sql._execute(f"DROP TABLE IF EXISTS iceberg.{db}.ice PURGE", "cleanup")
        sql.close()
