"""Iceberg snapshots in audit records on the real local stack: the record of a run names the
table's current snapshot, read through Presto's ``iceberg`` catalog (``controller.audit.snapshots``),
and ``pipectl audit show RUN --query`` answers as of that snapshot after more rows were written,
while the live table has them all; a statement that is not a query is refused."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.hive import HiveAdapter
from controller.adapters.presto import PrestoClient
from controller.audit.ledger import AuditRecord, Ledger
from controller.audit.snapshots import snapshots_at
from controller.model.manifest import PipelineRelease
from controller.plan.desired import stage_context
from controller.source.validate import load_repo
from controller.store.db import Store
from tests.integration.ctlkit import init_repo, pipectl, stage_env_yaml

pytestmark = pytest.mark.integration

RELEASE = """\
apiVersion: pipectl.dev/v1alpha1
kind: PipelineRelease
metadata:
  name: sn
spec:
  version: 1.0.0
  owner: it
  tables:
    - name: sn.events
      format: iceberg
      columns:
        - {name: host, type: string}
        - {name: samples, type: int}
  rollout:
    stages: [dev]
"""


@pytest.fixture
def db(hive_conn: Callable[..., Any], unique_name: str) -> Iterator[str]:
    name = f"it{unique_name}_sn"
    cur = hive_conn().cursor()
    cur.execute(f"CREATE DATABASE `{name}`")
    cur.execute(f"CREATE TABLE iceberg.`{name}`.`events` (host string, samples int) USING iceberg")
    yield name
    cur.execute(f"DROP TABLE IF EXISTS iceberg.`{name}`.`events`")
    cur.execute(f"DROP DATABASE IF EXISTS `{name}` CASCADE")


def test_a_query_as_of_a_run_sees_that_run_snapshot(
    db: str, hive_conn: Callable[..., Any], stack: dict[str, Any], tmp_path: Path
) -> None:
    prefix = db.removesuffix("sn")
    repo = init_repo(tmp_path, {
        "environments/dev.yaml": stage_env_yaml("dev", f"{prefix}.", prefix, str(tmp_path / "dags")),
        "releases/sn.yaml": RELEASE,
    }, "sn")
    snap = load_repo(repo)
    rel: PipelineRelease = snap.release("sn")
    ctx = stage_context("dev", {n: snap.environment(n) for n in snap.environments})
    presto = PrestoClient(stack["presto_host"], int(stack["presto_port"]))
    cur = hive_conn().cursor()

    thrift = HiveAdapter(str(stack["thrift_host"]), int(stack["thrift_port"]), auth="NOSASL")

    # no data yet: the table is recorded without a snapshot (through Presto and the Thrift Server)
    [empty] = snapshots_at(rel, ctx, lambda c: presto)
    assert (empty.table, empty.snapshot_id, empty.error) == (f"{db}.events", None, None)
    assert snapshots_at(rel, ctx, lambda c: thrift) == [empty]

    cur.execute(f"INSERT INTO iceberg.`{db}`.`events` VALUES ('a', 1), ('b', 2), ('c', 3)")
    [first] = snapshots_at(rel, ctx, lambda c: presto)
    [(current,)] = presto.query(f'SELECT snapshot_id FROM iceberg."{db}"."events$snapshots"')
    assert first.snapshot_id == str(current) and first.committed_at and first.committed_at.endswith("Z")
    # the engine's reader (the Thrift Server, a fraction of Presto's time) records the same
    assert snapshots_at(rel, ctx, lambda c: thrift) == [first]

    state = f"sqlite:///{tmp_path / 'state' / 'state.db'}"
    run_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    Ledger(Store(state)).append(AuditRecord(
        run_id=run_id, kind="apply", release="sn", version="1.0.0", stage="dev", outcome="succeeded",
        started_at=now, finished_at=now, snapshots=[first],
    ))
    cur.execute(f"INSERT INTO iceberg.`{db}`.`events` VALUES ('d', 4), ('e', 5)")
    [second] = snapshots_at(rel, ctx, lambda c: presto)
    assert second.snapshot_id not in (None, first.snapshot_id)
    assert presto.query(f'SELECT count(*) FROM iceberg."{db}"."events"') == [(5,)]

    sql = f"SELECT count(*), sum(samples) FROM {db}.events"
    res = pipectl("audit", "show", run_id, "--query", sql, "--repo", str(repo), "--state", state, "-o", "json")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["[", "[", "3,", "6", "]", "]"], res.stdout
    assert f'"{db}"."events@{first.snapshot_id}"' in res.stderr

    shown = pipectl("audit", "show", run_id, "--state", state, "-o", "json")
    assert shown.returncode == 0 and f'"snapshot_id": "{first.snapshot_id}"' in shown.stdout, shown.stderr
    assert pipectl("audit", "verify", "--state", state).returncode == 0

    refused = pipectl("audit", "show", run_id, "--query", f"DELETE FROM {db}.events", "--repo", str(repo),
                      "--state", state)
    assert refused.returncode == 1 and "only one read-only query" in refused.stderr
    assert presto.query(f'SELECT count(*) FROM iceberg."{db}"."events"') == [(5,)]
