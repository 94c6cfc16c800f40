"""Rolling back an in-place job also rolls its Iceberg table back (``engine.table_restore``),
through the real ``Reconciler`` over the fakes of ``world.py`` and a Presto fake that keeps one
table's snapshots: the table goes back to the snapshot current before the failed version's first
commit, while the job is stopped, once; the known good restarts from that snapshot's end offsets;
the rollback record names the snapshot. Without an exact point the restore keeps the recorded
start offsets and says why."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.base import CallStats
from controller.model.reasons import Phase, Verdict
from controller.plan.resources import ResourceKind, StreamingJobResource
from controller.plan.rules.spark import option
from controller.rollout.inplace import PINNED
from controller.rollout.table_rollback import END_OFFSETS_KEY, QUERY_KEY, VERSION_KEY
from tests.unit.engine.test_inplace_rollback import COMMITTED, DEV_JOB, decided, doc, inplace_release
from tests.unit.engine.world import T0, World, repo_files

pytestmark = pytest.mark.usefixtures("quiet_logs")

PARQUET = "      partitionedBy:\n        - {name: dt, type: string}\n"
TABLE = "dev_telemetry.metrics_1m"  # in place: one table per stage, no version in its name
GOOD_ENDS = '{"dev.telemetry.metrics_events":{"0":80,"1":95,"2":70}}'


def iceberg_release(version: str) -> dict[str, str]:
    files = inplace_release(version)
    key = next(iter(files))
    files[key] = files[key].replace(PARQUET, "      format: iceberg\n")
    assert "format: iceberg" in files[key]
    return files


class TablePresto:
    """``SqlPort`` over one Iceberg table's snapshots: ``$snapshots``, the current one, rollback."""

    def __init__(self, w: World, name: str) -> None:
        self.w, self.name, self.stats, self.catalog = w, name, CallStats(), "hive"
        self.snaps: list[tuple[str, str | None, str, dict[str, str]]] = []
        self.current: str | None = None
        self.rollbacks: list[tuple[str, set[str]]] = []
        """(snapshot id, jobs running at the CALL)."""

    def commit(self, sid: str, version: str, seconds: float, ends: str | None = None) -> None:
        summary = {VERSION_KEY: version, QUERY_KEY: DEV_JOB}
        if ends:
            summary[END_OFFSETS_KEY] = ends
        at = (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S.000 UTC")
        self.snaps.append((sid, self.current, at, summary))
        self.current = sid

    def query(self, sql: str, *, op: str = "query") -> list[tuple[Any, ...]]:
        self.stats.count(op)
        if op == "iceberg_snapshot_log":
            return [(s, p, at, json.dumps(summary)) for s, p, at, summary in self.snaps]
        if op == "iceberg_snapshots":
            at = next(a for s, _, a, _ in self.snaps if s == self.current) if self.current else None
            return [(self.name, self.current, at)] if self.current else []
        if op == "iceberg_rollback":
            m = re.search(r", (-?\d+)\)$", sql)
            assert m, sql
            self.rollbacks.append((m.group(1), self.w.at("dev").spark.running()))
            self.current = m.group(1)
            return []
        return [(1,)]


@pytest.fixture
def w(tmp_path: Path) -> World:
    """1.0.0 Succeeded everywhere, dev's table holding two 1.0.0 commits, the second ending at GOOD_ENDS."""
    world = World(tmp_path)
    world.commit({**repo_files(), **iceberg_release("1.0.0")})
    presto = TablePresto(world, TABLE)
    presto.commit("101", "1.0.0", -600, '{"dev.telemetry.metrics_events":{"0":40,"1":50,"2":30}}')
    presto.commit("102", "1.0.0", -300, GOOD_ENDS)
    world.at("dev").presto = presto  # type: ignore[assignment]
    world.promote_everywhere("1.0.0")
    world.at("dev").spark.committed[DEV_JOB] = COMMITTED  # recorded start: later than GOOD_ENDS
    return world


def presto(w: World) -> TablePresto:
    p = w.at("dev").presto
    assert isinstance(p, TablePresto)
    return p


def restored(w: World) -> StreamingJobResource:
    j = w.at("dev").spark.get(ResourceKind.STREAMING_JOB, DEV_JOB)
    assert isinstance(j, StreamingJobResource)
    return j


def deploy_failing(w: World, *commits: tuple[str, str | None]) -> None:
    """1.1.0 in place at dev, its gate failing; ``commits`` (id, end offsets) are its commits, a
    day after the clock's start (after its start is recorded; the fake table is read only then)."""
    for i, (sid, ends) in enumerate(commits):
        presto(w).commit(sid, "1.1.0", 3600 * 24 + i, ends)
    w.gates.set("dev", "keeps-up", Verdict.FAIL, "double counts")
    w.commit(iceberg_release("1.1.0"))
    w.run_until(lambda: decided(w, "dev", "1.1.0"))


def test_the_table_goes_back_before_the_failed_versions_first_commit_and_the_good_restarts_there(w: World) -> None:
    deploy_failing(w, ("201", '{"dev.telemetry.metrics_events":{"0":90,"1":99,"2":75}}'), ("202", None))

    st = w.stage("dev")
    assert st.phase is Phase.ROLLED_BACK, st.message
    assert presto(w).current == "102"
    assert presto(w).rollbacks == [("102", set())]  # once, with no job running
    job = restored(w)
    assert job.version == "1.0.0" and job.running
    assert json.loads(option(job.args, "--starting-offsets") or "") == json.loads(GOOD_ENDS)
    pin = doc(w, "dev").checkpoints[DEV_JOB]
    assert (pin.offsets, job.checkpoint) == (GOOD_ENDS, pin.checkpoint) and PINNED in pin.checkpoint
    assert f"tables at their snapshot before the failed version: {TABLE} 102" in (st.message or "")

    [rb] = w.audit("rollback")
    assert rb["details"]["tablesRolledBackTo"] == {TABLE: "102"}
    assert rb["details"]["tablesNotRolledBack"] == {}
    assert [s["snapshot_id"] for s in rb["snapshots"]] == ["102"]

    for _ in range(3):  # later passes never roll the table back again
        w.clock.advance(30)
        assert not w.reconcile().errors
    assert len(presto(w).rollbacks) == 1


def test_a_failed_version_that_never_committed_resumes_at_the_current_snapshot(w: World) -> None:
    deploy_failing(w)

    assert w.stage("dev").phase is Phase.ROLLED_BACK
    assert presto(w).rollbacks == []  # already current: no CALL
    assert json.loads(option(restored(w).args, "--starting-offsets") or "") == json.loads(GOOD_ENDS)
    [rb] = w.audit("rollback")
    assert rb["details"]["tablesRolledBackTo"] == {TABLE: "102"}


def test_without_end_offsets_the_table_is_kept_and_the_restore_says_so(w: World) -> None:
    p = presto(w)
    p.snaps[-1][3].pop(END_OFFSETS_KEY)  # 102 written by a sink before pipectl.end-offsets
    deploy_failing(w, ("201", None))

    st = w.stage("dev")
    assert st.phase is Phase.ROLLED_BACK
    assert p.rollbacks == [] and p.current == "201"
    want = {t: {str(k): v for k, v in parts.items()} for t, parts in COMMITTED.items()}
    assert json.loads(option(restored(w).args, "--starting-offsets") or "") == want  # today's restart
    assert "not rolled back" in (st.message or "") and "[NoEndOffsets]" in (st.message or "")
    [rb] = w.audit("rollback")
    assert rb["details"]["tablesRolledBackTo"] == {}
    assert rb["details"]["tablesNotRolledBack"] == {TABLE: "snapshot 102 has no pipectl.end-offsets [NoEndOffsets]"}


def test_unreadable_snapshots_keep_todays_restart(w: World) -> None:
    def broken(sql: str, *, op: str = "query") -> list[tuple[Any, ...]]:
        raise RuntimeError("presto down")

    presto(w).query = broken  # type: ignore[method-assign]
    w.gates.set("dev", "keeps-up", Verdict.FAIL, "double counts")
    w.commit(iceberg_release("1.1.0"))
    w.run_until(lambda: decided(w, "dev", "1.1.0"))

    st = w.stage("dev")
    assert st.phase is Phase.ROLLED_BACK, st.message
    assert "[SnapshotsUnreadable]" in (st.message or "")

