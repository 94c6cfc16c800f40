"""Iceberg table maintenance on the real local stack (issue #16 item 5): the tasks
``controller.plan.maintenance`` plans for a declared ``maintenance`` block, run by the Hive
adapter on the Spark Thrift Server (``HiveAdapter.maintain``, with Iceberg's SQL extensions):

- retention drops the days older than its cut-off as whole partitions (a ``delete`` snapshot that
  adds no data file: nothing rewritten), and Presto reads exactly the kept days;
- compaction rewrites a partition's small files into one;
- snapshot expiry removes the old snapshots but keeps the one an audit record (a real ledger in a
  SQLite store) names: ``audit show --query`` style time travel to it still answers through Presto;
- orphan removal deletes a stray file under the table's location older than its cut-off.

The plan's ``now`` is two days ahead of the clock so every snapshot made here is past
``olderThan``; the data's days are placed around it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.adapters import hive_iceberg as ice
from controller.adapters.hive import HiveAdapter
from controller.adapters.presto import PrestoClient
from controller.audit.ledger import AuditRecord, Ledger
from controller.audit.snapshots import read_snapshots
from controller.engine.maintenance import audited_snapshots
from controller.model.manifest import TableSpec
from controller.plan import maintenance as pm
from controller.store.db import Store

pytestmark = pytest.mark.integration


@pytest.fixture
def db(hive_conn: Callable[..., Any], unique_name: str) -> Iterator[str]:
    name = f"it{unique_name}_mt"
    cur = hive_conn().cursor()
    cur.execute(f"CREATE DATABASE `{name}`")
    cur.execute(
        f"CREATE TABLE iceberg.`{name}`.`ev` (window_start timestamp_ntz, host string, samples int) "
        "USING iceberg PARTITIONED BY (days(window_start)) TBLPROPERTIES ('format-version'='2')"
    )
    yield name
    cur.execute(f"DROP TABLE IF EXISTS iceberg.`{name}`.`ev`")
    cur.execute(f"DROP DATABASE IF EXISTS `{name}` CASCADE")


def spec(db: str) -> TableSpec:
    return TableSpec.model_validate({
        "name": f"{db}.ev", "format": "iceberg",
        "columns": [{"name": "window_start", "type": "timestamp"}, {"name": "host", "type": "string"},
                    {"name": "samples", "type": "int"}],
        "partitioning": ["days(window_start)"],
        "maintenance": {
            "schedule": "@daily", "retention": {"column": "window_start", "keep": "5d"},
            "compact": {"minInputFiles": 2}, "expireSnapshots": {"olderThan": "1d", "retainLast": 1},
            "removeOrphanFiles": {"olderThan": "4d"},
        },
    })


def test_maintenance_drops_old_partitions_compacts_expires_and_keeps_the_audited_snapshot(
    db: str, hive_conn: Callable[..., Any], stack: dict[str, Any], tmp_path: Path
) -> None:
    presto = PrestoClient(stack["presto_host"], int(stack["presto_port"]))
    hive = HiveAdapter(stack["thrift_host"], int(stack["thrift_port"]), auth="NOSASL")
    cur = hive_conn().cursor()
    name, table = f"{db}.ev", f'iceberg."{db}"."ev"'
    real_now = datetime.now(UTC)
    today = real_now.replace(hour=0, minute=0, second=0, microsecond=0)

    def insert(day: int, *rows: tuple[str, int]) -> None:
        at = (today - timedelta(days=day)).strftime("%Y-%m-%d")
        values = ", ".join(f"(TIMESTAMP_NTZ '{at} 10:00:00', '{h}', {n})" for h, n in rows)
        cur.execute(f"INSERT INTO iceberg.`{db}`.`ev` VALUES {values}")
        time.sleep(1.2)  # snapshots over a second apart: the expiry cut-off keeps a 1 s margin

    for day in (6, 5, 4):
        insert(day, ("a", day), ("b", day))
    # a deploy's audit record names the snapshot current now (days 6, 5, 4: 6 rows)
    store = Store(f"sqlite:///{tmp_path}/state.db")
    ledger = Ledger(store)
    t0 = datetime.now(UTC)
    [held] = read_snapshots(presto, [name])
    assert held.snapshot_id is not None
    ledger.append(AuditRecord(run_id="r1", kind="apply", release="rel", stage="dev", outcome="Succeeded",
                              started_at=t0, finished_at=t0, snapshots=[held]))
    for day in (3, 2, 1):
        insert(day, ("a", day), ("b", day))
    insert(1, ("c", 100))  # a second small file in day 1's partition

    plan_now = real_now + timedelta(days=2)
    audited = audited_snapshots(ledger.records("rel"), "dev", name)
    assert [a.snapshot_id for a in audited] == [held.snapshot_id]
    tasks = pm.plan_tasks(spec(db), name, plan_now, audited)
    assert [t.kind for t in tasks] == [pm.TaskKind.RETENTION, pm.TaskKind.COMPACT,
                                       pm.TaskKind.EXPIRE_SNAPSHOTS, pm.TaskKind.REMOVE_ORPHAN_FILES]
    assert tasks[0].before == today - timedelta(days=3)  # floor(plan_now - 5d): days 6, 5, 4 go

    snaps_before = {str(r[0]) for r in presto.query(f'SELECT snapshot_id FROM {ice.metadata_table(db, "ev", "$snapshots")}')}
    [(data_file,)] = presto.query(f'SELECT file_path FROM {ice.metadata_table(db, "ev", "$files")} LIMIT 1')
    root = Path(str(data_file).removeprefix("file:").split("/data/")[0])
    orphan = root / "data" / "stray-orphan.parquet"
    orphan.write_bytes(b"not referenced by any snapshot")
    old = (real_now - timedelta(days=5)).timestamp()
    os.utime(orphan, (old, old))

    done = {t.kind: hive.maintain(t) for t in tasks}

    retention = done[pm.TaskKind.RETENTION]
    assert retention["operation"] == "delete"
    assert (retention["deleted-data-files"], retention["deleted-records"]) == ("3", "6")
    assert (retention["added-data-files"], retention["added-records"]) == ("0", "0")  # nothing rewritten
    assert presto.query(f"SELECT count(*), sum(samples) FROM {table}") == [(7, 2 * (3 + 2 + 1) + 100)]
    assert done[pm.TaskKind.COMPACT]["rewritten_data_files"] == "2"
    assert done[pm.TaskKind.COMPACT]["added_data_files"] == "1"

    snaps_after = {str(r[0]) for r in presto.query(f'SELECT snapshot_id FROM {ice.metadata_table(db, "ev", "$snapshots")}')}
    expired = snaps_before - snaps_after
    assert len(expired) == 2, (snaps_before, snaps_after)  # the two before the audited one
    assert held.snapshot_id in snaps_after
    as_of = ice.metadata_table(db, "ev", f"@{held.snapshot_id}")
    assert presto.query(f"SELECT count(*), sum(samples) FROM {as_of}") == [(6, 2 * (6 + 5 + 4))]

    assert done[pm.TaskKind.REMOVE_ORPHAN_FILES]["removed_files"] == "1"
    assert not orphan.exists()
