"""Which Iceberg snapshot to roll each table back to when an in-place version fails (issue #16
item 4): the one the audit recorded before the failed version's first run at that stage. Pure:
the engine hands in the stage's records, oldest first, as ``RecordedRun``s (``controller.audit``
is a sibling layer, so its ``AuditRecord`` is not imported here). Not wired into the engine yet.

A record's snapshots are read after the run's actions, so the failed version's own first record
may already hold its job's commits; the record before it is the last state known to be the good
version's. Good events committed between that record and the failed version's deploy are rolled
back with the failed ones: the known good version's replay from its recorded offsets is what puts
them back (not built yet).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# a run of one of these kinds deploys its version at the stage (a failed attempt starts with one)
DEPLOYING_KINDS = frozenset({"apply", "promotion"})


@dataclass(frozen=True)
class RecordedRun:
    """What one audit record of the stage says about its Iceberg tables."""

    kind: str
    version: str | None
    snapshots: Mapping[str, str | None]
    """table → snapshot id current after the run (None: the table had no data yet)."""
    unreadable: frozenset[str] = field(default_factory=frozenset)
    """Tables listed whose snapshot could not be read (``TableSnapshot.error``)."""


@dataclass(frozen=True)
class RollbackTarget:
    """For one table: the snapshot to make current again, or None and why there is none."""

    table: str
    snapshot_id: str | None
    reason: str


def attempt_start(runs: Sequence[RecordedRun], failed_version: str) -> int | None:
    """Index of the failed version's first deploying run in its latest attempt: after the last
    rollback record (a rollback ends an attempt; a retried version starts a new one)."""
    last_rollback = max((i for i, r in enumerate(runs) if r.kind == "rollback"), default=-1)
    return next(
        (
            i
            for i in range(last_rollback + 1, len(runs))
            if runs[i].version == failed_version and runs[i].kind in DEPLOYING_KINDS
        ),
        None,
    )


def rollback_targets(
    runs: Sequence[RecordedRun], failed_version: str, tables: Sequence[str]
) -> list[RollbackTarget]:
    """Per table (in ``tables``' order), the snapshot recorded by the latest run before the failed
    version's first run that lists the table. No target when the failed version has no recorded
    run, when that earlier record could not read the table (an older snapshot would drop good
    commits the record does not account for), when the table had no data then (Iceberg cannot roll
    back to before the first snapshot), or when no earlier record lists it."""
    start = attempt_start(runs, failed_version)
    if start is None:
        return [RollbackTarget(t, None, f"no recorded run of {failed_version} to roll back") for t in tables]
    out = []
    for table in tables:
        listing = (r for r in reversed(runs[:start]) if table in r.snapshots or table in r.unreadable)
        before = next(listing, None)
        if before is None:
            out.append(RollbackTarget(table, None, f"no record before {failed_version} lists it"))
        elif table in before.unreadable:
            last = f"{before.kind} of {before.version}"
            reason = f"the last record before {failed_version} ({last}) could not read it"
            out.append(RollbackTarget(table, None, reason))
        elif before.snapshots[table] is None:
            out.append(RollbackTarget(table, None, f"it had no data before {failed_version}"))
        else:
            reason = f"recorded by the {before.kind} of {before.version} before {failed_version}'s first run"
            out.append(RollbackTarget(table, before.snapshots[table], reason))
    return out
