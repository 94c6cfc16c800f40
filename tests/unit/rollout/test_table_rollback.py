"""The exact rollback point of an Iceberg table written by a failed in-place version
(controller.rollout.table_rollback): the snapshot current right before the failed version's first
commit, with its end offsets, or no point and a named reason. Cases as data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.rollout.table_rollback import (
    END_OFFSETS_KEY,
    QUERY_KEY,
    VERSION_KEY,
    PointReason,
    RollbackPoint,
    Snapshot,
    ancestry,
    restart_offsets,
    rollback_point,
)

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
JOB = "dev-hm-agg"


def ends(n: int) -> str:
    return f'{{"dev.events":{{"0":{n},"1":{n + 1}}}}}'


def snap(i: int, version: str | None, parent: int | None, *, offsets: bool = True, query: str = JOB) -> Snapshot:
    summary = {"operation": "append"}
    if version is not None:
        summary |= {VERSION_KEY: version, QUERY_KEY: query}
        if offsets:
            summary[END_OFFSETS_KEY] = ends(i * 100)
    return Snapshot(str(i), None if parent is None else str(parent), T0 + timedelta(seconds=i), summary)


def chain(*versions: str | None) -> list[Snapshot]:
    """Snapshots 1..n, each the parent of the next, written by ``versions`` in order."""
    return [snap(i, v, i - 1 if i > 1 else None) for i, v in enumerate(versions, start=1)]


# (case, snapshots, current, since (seconds after T0), reason, snapshot id, end offsets)
CASES = [
    ("rolls back to the good version's last commit before the failed one's first",
     chain("1.0.0", "1.0.0", "1.1.0", "1.1.0"), "4", None, PointReason.ROLL_BACK, "2", ends(200)),
    ("good commits after the start was recorded are kept: only the failed version's are dropped",
     chain("1.0.0", "1.0.0", "1.0.0", "1.1.0"), "4", 1, PointReason.ROLL_BACK, "3", ends(300)),
    ("the failed version never committed: nothing to roll back, resume from the current snapshot",
     chain("1.0.0", "1.0.0"), "2", None, PointReason.NOT_COMMITTED, "2", ends(200)),
    ("an earlier attempt's commits (before since) are not this attempt's",
     chain("1.0.0", "1.1.0", "1.0.0", "1.1.0"), "4", 3, PointReason.ROLL_BACK, "3", ends(300)),
    ("an earlier attempt's commits, current already the good's: not committed in this attempt",
     chain("1.0.0", "1.1.0", "1.0.0"), "3", 3, PointReason.NOT_COMMITTED, "3", ends(300)),
    ("snapshots an earlier rollback left behind are not ancestors and do not count",
     [*chain("1.0.0", "1.0.0"), snap(3, "1.1.0", 2), snap(4, "1.0.0", 2), snap(5, "1.1.0", 4)],
     "5", None, PointReason.ROLL_BACK, "4", ends(400)),
    ("another version committed after the failed version's first commit",
     chain("1.0.0", "1.1.0", "1.0.0", "1.1.0"), "4", None, PointReason.OTHER_WRITER, None, None),
    ("a writer without pipectl tags after the failed version's first commit",
     chain("1.0.0", "1.1.0", None), "3", None, PointReason.OTHER_WRITER, None, None),
    ("the failed version made the table's first snapshot",
     chain("1.1.0", "1.1.0"), "2", None, PointReason.FIRST_COMMIT, None, None),
    ("the point has no end offsets (written by a sink before pipectl.end-offsets)",
     [snap(1, "1.0.0", None, offsets=False), snap(2, "1.1.0", 1)], "2", None, PointReason.NO_END_OFFSETS, None, None),
    ("the point was written by another query (another job's offsets are not this job's)",
     [snap(1, "1.0.0", None, query="dev-other"), snap(2, "1.1.0", 1)], "2", None, PointReason.OTHER_QUERY, None, None),
    ("the point was written outside pipectl",
     [snap(1, None, None), snap(2, "1.1.0", 1)], "2", None, PointReason.OTHER_QUERY, None, None),
    ("an empty table", [], None, None, PointReason.NO_SNAPSHOT, None, None),
    ("the current snapshot is not among those read", chain("1.0.0"), "9", None, PointReason.NO_SNAPSHOT, None, None),
]


@pytest.mark.parametrize(("case", "snaps", "current", "since", "reason", "sid", "offsets"), CASES, ids=[c[0] for c in CASES])
def test_rollback_point(
    case: str, snaps: list[Snapshot], current: str | None, since: int | None,
    reason: PointReason, sid: str | None, offsets: str | None,
) -> None:
    at = None if since is None else T0 + timedelta(seconds=since)
    got = rollback_point("db.t", snaps, current, "1.1.0", JOB, at)
    assert (got.reason, got.snapshot_id, got.end_offsets) == (reason, sid, offsets), got.detail
    assert got.exact == (sid is not None)
    assert got.rolls_back == (reason is PointReason.ROLL_BACK)
    assert got.detail


def test_details_name_the_snapshots() -> None:
    assert rollback_point("db.t", chain("1.0.0", "1.1.0"), "2", "1.1.0", JOB).detail == (
        "snapshot 1, current before 1.1.0's first commit"
    )
    other = rollback_point("db.t", chain("1.0.0", "1.1.0", "1.0.0"), "3", "1.1.0", JOB)
    assert other.detail == "snapshot 3 by 1.0.0 follows 1.1.0's first commit 2"


def test_ancestry_is_oldest_first_and_survives_a_parent_cycle() -> None:
    assert [s.id for s in ancestry(chain("a", "b", "c"), "2") or []] == ["1", "2"]
    loop = [snap(1, "a", 2), snap(2, "a", 1)]
    assert [s.id for s in ancestry(loop, "1") or []] == ["2", "1"]
    assert ancestry(chain("a"), "7") is None


def test_end_offsets_are_compared_in_one_spelling() -> None:
    s1 = Snapshot("1", None, T0, {VERSION_KEY: "1.0.0", QUERY_KEY: JOB, END_OFFSETS_KEY: '{"t": {"1": 5, "0": 4}}'})
    s2 = Snapshot("2", "1", T0, {VERSION_KEY: "1.1.0", QUERY_KEY: JOB})
    assert rollback_point("db.t", [s1, s2], "2", "1.1.0", JOB).end_offsets == '{"t":{"0":4,"1":5}}'


def point(table: str, reason: PointReason, offsets: str | None = None) -> RollbackPoint:
    return RollbackPoint(table, reason, "why", "1" if offsets else None, offsets)


def test_restart_offsets_need_every_table_exact_and_agreeing() -> None:
    a, b = ends(100), ends(200)
    assert restart_offsets([point("x", PointReason.ROLL_BACK, a), point("y", PointReason.NOT_COMMITTED, a)])[0] == a
    none, why = restart_offsets([point("x", PointReason.ROLL_BACK, a), point("y", PointReason.NO_END_OFFSETS)])
    assert none is None and why == "y: why [NoEndOffsets]"
    none, why = restart_offsets([point("x", PointReason.ROLL_BACK, a), point("y", PointReason.ROLL_BACK, b)])
    assert none is None and why.startswith("its tables' rollback points end at different offsets")
    assert restart_offsets([]) == (None, "it writes no Iceberg table")
