"""What a table maintenance run does, decided from the manifest, the clock and the audit trail
(issue #16 item 5). Pure: ``now`` and the audited snapshots are arguments; the engine
(``controller.engine.maintenance``) records and runs the tasks, the Hive adapter renders them as
Spark SQL (``controller.adapters.hive_maintenance``).

- A run is due when the schedule fired since the last run (one run for any number of missed fires).
- Retention deletes rows older than a partition boundary of the table's time transform of the
  column: ``now - keep`` rounded down to the hour, day, month or year. Every row older than the
  cut-off is in a partition wholly older, so Iceberg drops data files without rewriting any.
- Snapshot expiry never removes a snapshot a recorded run still needs: the cut-off is moved back to
  the oldest commit among the snapshots named by this release's audit records at the stage within
  ``keepAudited`` and by its latest record whatever its age (what an in-place rollback of the
  running version goes back to), so ``pipectl audit show RUN --query`` keeps working for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from croniter import croniter

from controller.model import iceberg
from controller.model.maintenance import TableMaintenance, parse_age
from controller.model.manifest import TableSpec

MARGIN = timedelta(seconds=1)
"""Expiry cut-offs stay this far before a needed snapshot's commit time (Iceberg keeps milliseconds,
audit records may keep less)."""


class TaskKind(StrEnum):
    RETENTION = "Retention"
    COMPACT = "Compact"
    EXPIRE_SNAPSHOTS = "ExpireSnapshots"
    REMOVE_ORPHAN_FILES = "RemoveOrphanFiles"


@dataclass(frozen=True)
class AuditedSnapshot:
    """A snapshot of the table named by an audit record of the release at the stage."""

    snapshot_id: str
    committed_at: datetime
    recorded_at: datetime


@dataclass(frozen=True)
class Task:
    kind: TaskKind
    table: str
    """Physical ``db.table`` at the stage."""
    reason: str
    before: datetime | None = None
    """Retention: rows with ``column`` before it; expiry: snapshots committed before it; orphans:
    files older than it."""
    column: str | None = None
    column_type: str | None = None
    retain_last: int | None = None
    min_input_files: int | None = None
    target_file_size_mb: int | None = None


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def last_fire(schedule: str, now: datetime) -> datetime:
    """The schedule's latest fire time at or before ``now`` (UTC)."""
    start = _utc(now).astimezone(UTC).replace(tzinfo=None) + timedelta(microseconds=1)  # a fire at now counts
    return _utc(croniter(schedule, start).get_prev(datetime))


def next_fire(schedule: str, now: datetime) -> datetime:
    return _utc(croniter(schedule, _utc(now).astimezone(UTC).replace(tzinfo=None)).get_next(datetime))


def is_due(schedule: str, last_run: datetime | None, now: datetime) -> bool:
    """Never run, or the schedule fired after the last run started."""
    return last_run is None or _utc(last_run) < last_fire(schedule, now)


def floor_to(transform: str, t: datetime) -> datetime:
    """The start of the ``hours``/``days``/``months``/``years`` partition holding ``t``."""
    t = _utc(t).astimezone(UTC)
    if transform == "hours":
        return t.replace(minute=0, second=0, microsecond=0)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if transform == "days":
        return day
    if transform == "months":
        return day.replace(day=1)
    return day.replace(month=1, day=1)


def expiry_cutoff(
    older_than: str, keep_audited: str, now: datetime, audited: Sequence[AuditedSnapshot]
) -> tuple[datetime, str]:
    """(expire snapshots committed before this, why)."""
    now = _utc(now)
    cut = now - timedelta(seconds=parse_age(older_than))
    horizon = now - timedelta(seconds=parse_age(keep_audited))
    needed = [a for a in audited if _utc(a.recorded_at) >= horizon]
    if audited:
        needed.append(max(audited, key=lambda a: _utc(a.recorded_at)))
    floor = min((_utc(a.committed_at) for a in needed), default=None)
    if floor is not None and floor - MARGIN < cut:
        held = min(needed, key=lambda a: _utc(a.committed_at))
        return (
            floor - MARGIN,
            f"snapshots before {held.snapshot_id} (recorded {held.recorded_at:%Y-%m-%dT%H:%MZ})",
        )
    return cut, f"snapshots older than {older_than}"


def plan_tasks(
    table: TableSpec, physical: str, now: datetime, audited: Sequence[AuditedSnapshot] = ()
) -> list[Task]:
    """The tasks of one run over ``table`` (at the stage, ``physical``), in the order they run:
    retention first (its delete is a snapshot the expiry may keep), compaction, expiry, orphans."""
    m: TableMaintenance | None = table.maintenance
    if m is None:
        return []
    now = _utc(now)
    out: list[Task] = []
    if m.retention is not None:
        r = m.retention
        fn = iceberg.time_transform(table.partitioning, r.column)
        assert fn is not None  # TableSpec refuses retention on a column without a time transform
        ctype = next(c.type for c in table.columns if c.name == r.column)
        cut = floor_to(fn, now - timedelta(seconds=parse_age(r.keep)))
        out.append(
            Task(
                TaskKind.RETENTION,
                physical,
                f"keep {r.keep} by {r.column} ({fn} partitions)",
                before=cut,
                column=r.column,
                column_type=ctype,
            )
        )
    if m.compact is not None:
        c = m.compact
        out.append(
            Task(
                TaskKind.COMPACT,
                physical,
                f"partitions with {c.min_input_files}+ files",
                min_input_files=c.min_input_files,
                target_file_size_mb=c.target_file_size_mb,
            )
        )
    if m.expire_snapshots is not None:
        e = m.expire_snapshots
        cut, why = expiry_cutoff(e.older_than, e.keep_audited, now, audited)
        out.append(Task(TaskKind.EXPIRE_SNAPSHOTS, physical, why, before=cut, retain_last=e.retain_last))
    if m.remove_orphan_files is not None:
        o = m.remove_orphan_files
        out.append(
            Task(
                TaskKind.REMOVE_ORPHAN_FILES,
                physical,
                f"unreferenced files older than {o.older_than}",
                before=now - timedelta(seconds=parse_age(o.older_than)),
            )
        )
    return out
