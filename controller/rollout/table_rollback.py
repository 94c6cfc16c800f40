"""Where an Iceberg table written by an in-place job goes back to when the job's new version fails,
and where the known good restarts reading so that table and offsets agree (issue #16 item 4).

The exactly-once sink (``controller.jobkit.iceberg_sink``) commits once per micro-batch and tags
the snapshot with the version that wrote it (``pipectl.version``), the query (``pipectl.query``)
and the batch's end offsets (``pipectl.end-offsets``). The exact rollback point of a table is the
snapshot that was current right before the failed version's first commit: it holds every event
up to its end offsets, counted by the known good, and none after. Rolled back to it, the table
plus a restart of the known good from exactly those offsets counts every event once, whatever the
merge (an additive MERGE included). Earlier recorded positions (the start offsets recorded before
the switch, an audit record's snapshot) can disagree with the snapshot and double-count or lose.

Pure: the engine hands in the table's snapshots (``$snapshots``: id, parent, commit time,
summary) and its current snapshot, and records and applies the answer
(``controller.engine.table_restore``). Only the current snapshot's ancestry counts: snapshots an
earlier rollback left behind are not the table's history any more.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

VERSION_KEY = "pipectl.version"
QUERY_KEY = "pipectl.query"
END_OFFSETS_KEY = "pipectl.end-offsets"
"""The snapshot summary keys ``controller.jobkit.iceberg_sink`` writes (the job kit ships apart)."""


class PointReason(StrEnum):
    """Why a table has (or has no) exact rollback point."""

    ROLL_BACK = "RollBack"
    """The failed version committed: make the snapshot before its first commit current again."""
    NOT_COMMITTED = "NotCommitted"
    """The failed version never committed in this attempt: nothing to roll back; the current
    snapshot's end offsets are where the known good resumes."""
    NO_SNAPSHOT = "NoSnapshot"
    """The table has no snapshot (no data), or its current snapshot is not among those read."""
    FIRST_COMMIT = "FailedVersionFirstCommit"
    """The failed version made the table's first snapshot: Iceberg has nothing older to go back to."""
    NO_END_OFFSETS = "NoEndOffsets"
    """The snapshot to go back to does not say where its events end (an older sink, another writer)."""
    OTHER_QUERY = "OtherQuery"
    """The snapshot to go back to was written by another query than the job's."""
    OTHER_WRITER = "OtherWriterAfter"
    """A commit by another version or writer follows the failed version's first one: rolling back
    would drop it, and replaying the job would not put it back."""
    UNREADABLE = "SnapshotsUnreadable"
    """The table's snapshots could not be read."""


EXACT = frozenset({PointReason.ROLL_BACK, PointReason.NOT_COMMITTED})


@dataclass(frozen=True)
class Snapshot:
    """One row of an Iceberg table's ``$snapshots``."""

    id: str
    parent: str | None
    committed_at: datetime
    summary: Mapping[str, str]


@dataclass(frozen=True)
class RollbackPoint:
    """For one table: the snapshot to be current after the restore and where its events end."""

    table: str
    reason: PointReason
    detail: str
    snapshot_id: str | None = None
    end_offsets: str | None = None

    @property
    def exact(self) -> bool:
        """Table and restart offsets agree (after rolling back when ``rolls_back``)."""
        return self.reason in EXACT

    @property
    def rolls_back(self) -> bool:
        return self.reason is PointReason.ROLL_BACK


def ancestry(snapshots: Sequence[Snapshot], current: str) -> list[Snapshot] | None:
    """The current snapshot and its ancestors, oldest first; None if ``current`` is not listed."""
    by_id = {s.id: s for s in snapshots}
    chain: list[Snapshot] = []
    seen: set[str] = set()
    at: str | None = current
    while at is not None and at in by_id and at not in seen:  # a parent cycle would be corrupt metadata
        seen.add(at)
        chain.append(by_id[at])
        at = by_id[at].parent
    return list(reversed(chain)) if chain else None


def rollback_point(
    table: str,
    snapshots: Sequence[Snapshot],
    current: str | None,
    failed_version: str,
    query: str,
    since: datetime | None = None,
) -> RollbackPoint:
    """The exact rollback point of ``table`` for ``failed_version`` of the job ``query``.

    ``since`` (optional) is when the current attempt started: the failed version's commits before
    it belong to an earlier attempt, whose rows an earlier restore already left as they were.
    """
    if current is None:
        return RollbackPoint(table, PointReason.NO_SNAPSHOT, "it has no current snapshot")
    chain = ancestry(snapshots, current)
    if not chain:
        return RollbackPoint(table, PointReason.NO_SNAPSHOT, f"its current snapshot {current} is not listed")
    first = next(
        (
            i
            for i, s in enumerate(chain)
            if s.summary.get(VERSION_KEY) == failed_version and (since is None or s.committed_at >= since)
        ),
        None,
    )
    if first is None:
        return _with_offsets(table, chain[-1], PointReason.NOT_COMMITTED, failed_version, query)
    other = next((s for s in chain[first:] if s.summary.get(VERSION_KEY) != failed_version), None)
    if other is not None:
        by = other.summary.get(VERSION_KEY) or "a writer without pipectl.version"
        detail = f"snapshot {other.id} by {by} follows {failed_version}'s first commit {chain[first].id}"
        return RollbackPoint(table, PointReason.OTHER_WRITER, detail)
    if first == 0:
        detail = f"{failed_version}'s commit {chain[0].id} is the table's first snapshot"
        return RollbackPoint(table, PointReason.FIRST_COMMIT, detail)
    return _with_offsets(table, chain[first - 1], PointReason.ROLL_BACK, failed_version, query)


def _with_offsets(
    table: str, snap: Snapshot, reason: PointReason, failed_version: str, query: str
) -> RollbackPoint:
    """``snap`` as the point, if it says where its events end and the job's query wrote it."""
    if snap.summary.get(QUERY_KEY) != query:
        by = snap.summary.get(QUERY_KEY) or "no pipectl query"
        return RollbackPoint(table, PointReason.OTHER_QUERY, f"snapshot {snap.id} was written by {by}")
    ends = snap.summary.get(END_OFFSETS_KEY)
    if not ends:
        detail = f"snapshot {snap.id} has no {END_OFFSETS_KEY}"
        return RollbackPoint(table, PointReason.NO_END_OFFSETS, detail)
    if reason is PointReason.ROLL_BACK:
        detail = f"snapshot {snap.id}, current before {failed_version}'s first commit"
    else:
        detail = f"no commit of {failed_version}; snapshot {snap.id} is current"
    return RollbackPoint(table, reason, detail, snap.id, _canonical(ends))


def _canonical(offsets: str) -> str:
    try:
        return json.dumps(json.loads(offsets), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return offsets


def restart_offsets(points: Sequence[RollbackPoint]) -> tuple[str | None, str]:
    """Where the job that writes these tables restarts so that every table agrees, and why: the
    common end offsets when every table has an exact point, else None and the reason."""
    if not points:
        return None, "it writes no Iceberg table"
    inexact = [p for p in points if not p.exact]
    if inexact:
        return None, "; ".join(f"{p.table}: {p.detail} [{p.reason}]" for p in inexact)
    ends = {p.end_offsets for p in points}
    if len(ends) != 1:
        return None, "its tables' rollback points end at different offsets: " + ", ".join(
            f"{p.table} {p.end_offsets}" for p in points
        )
    return points[0].end_offsets, "every table's rollback point ends at the same offsets"
