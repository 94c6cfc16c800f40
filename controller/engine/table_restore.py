"""An in-place job's Iceberg tables rolled back with the job when its new version fails (issue #16
item 4), for ``controller.engine.restore.Restorer``.

- ``decide`` (when the restore starts, before any side effect; the caller writes the result into
  the restore's intent): for each in-place job the restore moves to a fresh checkpoint, each
  Iceberg table the failed or the known good version writes from it, its snapshots read through
  the stage's Presto and its exact rollback point (``controller.rollout.table_rollback``).
  ``restart_offsets`` then gives, per job whose every table has an exact point, the offsets the
  known good restarts from: the point's end offsets, which agree with the table (instead of the
  start offsets recorded before the switch, which may not).
- ``apply`` (each attempt, until done): stop those jobs, then make each point's snapshot current
  (``rollback_to_snapshot``: a no-op when it is current already, so a resumed restore never rolls
  back twice); the caller records ``done`` before the known good starts writing again.
- A job with a table without an exact point keeps the recorded start offsets, and the restore's
  message and record say so (``summary``): its table keeps the failed version's rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from controller.adapters import hive_iceberg as ice
from controller.engine.backends import SqlPort
from controller.model.manifest import PipelineRelease, TableFormat
from controller.plan.desired import VERSIONED_STRATEGIES, StageContext, job_name, physical_table
from controller.rollout import table_rollback as tr
from controller.store.rollout import StageRollout, TableRollback

NO_COMMON_POINT = "its job's other tables give no common restart point"


def job_tables(rel: PipelineRelease, ctx: StageContext) -> dict[str, list[str]]:
    """Physical name of each in-place job of ``rel`` → the Iceberg tables it writes at the stage."""
    iceberg = {t.name for t in rel.spec.tables if t.format is TableFormat.ICEBERG}
    return {
        job_name(ctx, rel.name, j, rel.spec.version): [
            physical_table(ctx, rel, s.table, rel.spec.version) for s in j.sinks if s.table in iceberg
        ]
        for j in rel.spec.streaming_jobs
        if j.strategy not in VERSIONED_STRATEGIES
    }


def read_snapshots(presto: SqlPort, table: str) -> tuple[list[tr.Snapshot], str | None]:
    """The table's snapshots (``$snapshots``) and its current one (made current last, ``$history``).
    The current one is read first: a writer still committing adds snapshots in between, and the
    list read after it then holds it (read the other way round, it may not)."""
    current = ice.parse_snapshots(presto.query(ice.snapshots_sql([table]), op="iceberg_snapshots"))
    rows = ice.parse_snapshot_log(presto.query(ice.snapshot_log_sql(table), op="iceberg_snapshot_log"))
    snaps = [tr.Snapshot(sid, parent, _utc(when), summary) for sid, parent, when, summary in rows]
    return snaps, current[table][0] if table in current else None


def _utc(when: str) -> datetime:
    at = datetime.fromisoformat(when)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def decide(
    good: PipelineRelease,
    failed: PipelineRelease,
    ctx: StageContext,
    state: StageRollout,
    presto: Callable[[], SqlPort],
) -> list[TableRollback]:
    """The rollback point of every Iceberg table of each in-place job whose ``failed`` start was
    recorded (the jobs ``StageOps.pin_restarts`` moves). A table whose snapshots cannot be read
    gets no point (``SnapshotsUnreadable``); nothing here changes a table."""
    version = failed.spec.version
    good_tables, failed_tables = job_tables(good, ctx), job_tables(failed, ctx)
    out: list[TableRollback] = []
    for job, tables in good_tables.items():
        rec = state.inplace_starts.get(job)
        if rec is None or rec.version != version:
            continue
        for table in dict.fromkeys(tables + failed_tables.get(job, [])):
            try:
                snaps, current = read_snapshots(presto(), table)
            except Exception as e:  # no point, said so; the restore itself goes on as before
                msg = f"its snapshots could not be read: {type(e).__name__}: {e}"[:500]
                point = tr.RollbackPoint(table, tr.PointReason.UNREADABLE, msg)
            else:
                point = tr.rollback_point(table, snaps, current, version, job, rec.recorded_at)
            out.append(
                TableRollback(
                    job=job,
                    table=table,
                    reason=str(point.reason),
                    detail=point.detail,
                    snapshot_id=point.snapshot_id,
                    end_offsets=point.end_offsets,
                )
            )
    return out


def _point(t: TableRollback) -> tr.RollbackPoint:
    return tr.RollbackPoint(t.table, tr.PointReason(t.reason), t.detail, t.snapshot_id, t.end_offsets)


def restart_offsets(tables: list[TableRollback]) -> dict[str, str]:
    """Job → the offsets its known good restarts from, for each job whose tables all have an exact
    point ending at the same offsets (``table_rollback.restart_offsets``)."""
    out = {}
    for job in dict.fromkeys(t.job for t in tables):
        offsets, _why = tr.restart_offsets([_point(t) for t in tables if t.job == job])
        if offsets is not None:
            out[job] = offsets
    return out


def to_restore(tables: list[TableRollback]) -> list[TableRollback]:
    """The tables still to be made current at their point: those of the jobs that restart from it."""
    jobs = restart_offsets(tables)
    return [t for t in tables if t.job in jobs and not t.done]


def apply(presto: SqlPort, todo: list[TableRollback]) -> None:
    """Make each table's point current (the jobs writing them are stopped), marking each done.
    Raises the first failure; the tables before it stay marked (the caller records them)."""
    for t in todo:
        assert t.snapshot_id is not None  # exact points have one
        ice.rollback_to_snapshot(presto, t.table, t.snapshot_id)
        t.done = True


def summary(tables: list[TableRollback]) -> tuple[str, dict[str, object]]:
    """The restore message's part about tables, and the rollback record's details: table → the
    snapshot it was made current at (``tablesRolledBackTo``), and table → why it was not
    (``tablesNotRolledBack``)."""
    jobs = restart_offsets(tables)
    back = {t.table: t.snapshot_id for t in tables if t.job in jobs and t.done}
    if not tables:
        return "", {}
    kept: Mapping[str, str] = {
        t.table: f"{t.detail} [{t.reason}]" if not _point(t).exact else NO_COMMON_POINT
        for t in tables
        if t.job not in jobs
    }
    parts = []
    if back:
        parts.append("tables at their snapshot before the failed version: " + ", ".join(
            f"{t} {s}" for t, s in back.items()
        ))
    if kept:
        parts.append(
            "not rolled back (the known good restarts from the recorded start offsets; the failed "
            "version's rows stay): " + "; ".join(f"{t}: {why}" for t, why in kept.items())
        )
    return "; ".join(parts), {"tablesRolledBackTo": back, "tablesNotRolledBack": dict(kept)}
