"""Backfill planning, pure: partition chunks, deterministic Airflow run ids, and the ledger's rules.

A backfill of a release's DAG at a stage covers the ``dt`` days ``[start, end]``: one chunk per
day. Every chunk runs as one Airflow DAG run whose id and logical date follow from the release,
the version and the partition alone, so running the same backfill again finds the same runs:

* attempt 1: run id ``pipectl_backfill__<release>__<version>__<partition>``, logical date
  ``<partition>T00:00:00Z``;
* attempt ``k > 1`` (a retry of a failed run, or a ``--force`` re-run): run id
  ``pipectl_backfill__<release>__<version>__<partition>__r<k>``, logical date
  ``<partition>T00:00:00Z`` plus ``k - 1`` seconds.

The ``pipectl_`` prefix is needed: Airflow reserves run ids that start with ``backfill__``,
``scheduled__`` or ``dataset_triggered__`` for its own run types and refuses them for a run
triggered through the API ("A manual DAG run cannot use ID 'backfill__…' since it is reserved
for backfill runs").

Airflow keeps a failed run under its id, and allows one run per (DAG, logical date): a new
attempt therefore needs a new id *and* a new logical date. Shifting by whole seconds keeps
``ds`` (and the data interval Airflow infers for a manual run) on the partition's day; the
partition is also passed in the run's ``conf`` (``partition``), which the DAG uses first.

The ledger holds one entry per (release, stage, partition): the version, the run id of the latest
attempt, its status, the number of attempts made for that version, and — after a success — the
rows and checksum of the output partition. :func:`decide` turns a ledger entry into what a new
backfill does with the partition:

=================================  =========================================================
ledger entry                       decision
=================================  =========================================================
none, or another version           ``run`` attempt 1 (an existing Airflow run of that id — a
                                   lost ledger — is adopted through Airflow's 409, not re-run)
same version, ``success``          ``skip`` (``--force``: ``rerun`` as attempt ``attempts+1``)
same version, ``running``          ``resume``: poll the recorded run (a backfill that died)
same version, ``failed``           ``retry`` as attempt ``attempts+1``
=================================  =========================================================

Nothing here talks to a backend or the store: ``controller.engine.backfill`` carries it out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

RUN_ID_PREFIX = "pipectl_backfill"
AIRFLOW_RESERVED_PREFIXES = ("backfill__", "scheduled__", "dataset_triggered__")
MAX_DAYS = 3660
"""A backfill covers at most ten years of days (a typo in a date should not plan 100k runs)."""
MAX_ATTEMPTS = 59
"""Attempt ``k`` runs at second ``k-1`` of the day: attempts stay within the first minute."""

# Airflow's default ``[scheduler] allowed_run_id_pattern``; run ids are at most 250 characters.
RUN_ID_RE = re.compile(r"[A-Za-z0-9_.~:+-]{1,250}")
PARTITION_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


class BackfillError(ValueError):
    """A backfill cannot be planned as asked (bad dates, names or attempt numbers)."""


class Status(StrEnum):
    """The ledger status of a partition."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"


class Decision(StrEnum):
    RUN = "run"
    SKIP = "skip"
    RESUME = "resume"
    RETRY = "retry"
    RERUN = "rerun"


@dataclass(frozen=True)
class LedgerEntry:
    """One partition of the backfill ledger (``backfills`` table of the state store)."""

    partition: str
    version: str
    run_id: str
    status: Status
    attempts: int
    rows: int | None = None
    checksum: str | None = None


@dataclass(frozen=True)
class Chunk:
    """What a backfill does with one partition, and under which run."""

    partition: str
    decision: Decision
    attempt: int
    run_id: str
    logical_date: datetime
    reason: str

    @property
    def starts_run(self) -> bool:
        """True when the chunk triggers an Airflow run (skips and resumes do not)."""
        return self.decision in (Decision.RUN, Decision.RETRY, Decision.RERUN)


# --- partitions -------------------------------------------------------------------------------


def parse_day(text: str) -> date:
    """``2026-03-01`` -> a date; anything else is a :class:`BackfillError`."""
    if not PARTITION_RE.fullmatch(text):
        raise BackfillError(f"invalid date {text!r}: expected YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError as e:
        raise BackfillError(f"invalid date {text!r}: {e}") from e


def partitions(start: date, end: date, *, max_days: int = MAX_DAYS) -> list[str]:
    """The ``dt`` partitions of ``[start, end]`` (both included), oldest first."""
    if end < start:
        raise BackfillError(f"--to {end} is before --from {start}")
    days = (end - start).days + 1
    if days > max_days:
        raise BackfillError(f"{days} days from {start} to {end}: more than {max_days}; split the backfill")
    return [(start + timedelta(days=i)).isoformat() for i in range(days)]


# --- run ids and logical dates -------------------------------------------------------------------


def run_id(release: str, version: str, partition: str, attempt: int = 1) -> str:
    """``pipectl_backfill__<release>__<version>__<partition>`` (attempt 1) or ``…__r<attempt>``."""
    _check_attempt(attempt)
    if not PARTITION_RE.fullmatch(partition):
        raise BackfillError(f"invalid partition {partition!r}: expected YYYY-MM-DD")
    rid = f"{RUN_ID_PREFIX}__{release}__{version}__{partition}"
    if attempt > 1:
        rid += f"__r{attempt}"
    if not RUN_ID_RE.fullmatch(rid) or rid.startswith(AIRFLOW_RESERVED_PREFIXES):
        raise BackfillError(
            f"run id {rid!r} is not a valid Airflow run id ([A-Za-z0-9_.~:+-], at most 250 characters)"
        )
    return rid


def logical_date(partition: str, attempt: int = 1) -> datetime:
    """Midnight UTC of the partition's day, plus ``attempt - 1`` seconds (one run per logical date)."""
    _check_attempt(attempt)
    day = parse_day(partition)
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=attempt - 1)


def _check_attempt(attempt: int) -> None:
    if not 1 <= attempt <= MAX_ATTEMPTS:
        raise BackfillError(f"attempt {attempt} is out of range 1..{MAX_ATTEMPTS}")


# --- decisions ---------------------------------------------------------------------------------


def decide(
    release: str, version: str, partition: str, entry: LedgerEntry | None, *, force: bool = False
) -> Chunk:
    """What a backfill of ``version`` does with ``partition`` given its ledger entry."""
    if entry is None or entry.version != version:
        why = "not in the ledger" if entry is None else f"ledger holds version {entry.version}"
        return _chunk(release, version, partition, Decision.RUN, 1, why)
    if entry.status is Status.RUNNING:
        return Chunk(
            partition, Decision.RESUME, max(1, entry.attempts), entry.run_id,
            logical_date(partition, max(1, entry.attempts)), f"run {entry.run_id} was left running",
        )
    if entry.status is Status.SUCCESS and not force:
        return Chunk(
            partition, Decision.SKIP, entry.attempts, entry.run_id,
            logical_date(partition, max(1, entry.attempts)),
            f"done by {entry.run_id} ({entry.rows} rows, checksum {entry.checksum or '-'})",
        )
    if entry.status is Status.SUCCESS:
        return _chunk(release, version, partition, Decision.RERUN, entry.attempts + 1, "--force")
    return _chunk(
        release, version, partition, Decision.RETRY, entry.attempts + 1, f"run {entry.run_id} failed"
    )


def _chunk(release: str, version: str, partition: str, decision: Decision, attempt: int, why: str) -> Chunk:
    return Chunk(
        partition, decision, attempt, run_id(release, version, partition, attempt),
        logical_date(partition, attempt), why,
    )


def plan_chunks(
    release: str,
    version: str,
    days: Sequence[str],
    ledger: Mapping[str, LedgerEntry],
    *,
    force: bool = False,
) -> list[Chunk]:
    """One chunk per partition, in partition order."""
    if len(set(days)) != len(days):
        raise BackfillError("partitions repeat")
    return [decide(release, version, d, ledger.get(d), force=force) for d in days]


def next_attempt(release: str, version: str, chunk: Chunk) -> Chunk:
    """The retry of a chunk whose run failed: the next attempt number, run id and logical date."""
    why = f"attempt {chunk.attempt} failed"
    return _chunk(release, version, chunk.partition, Decision.RETRY, chunk.attempt + 1, why)


# --- ledger transitions ----------------------------------------------------------------------------


def started(entry: LedgerEntry | None, chunk: Chunk, version: str) -> LedgerEntry:
    """The entry once ``chunk``'s run is (about to be) triggered or resumed: ``running``."""
    if chunk.decision is Decision.SKIP:
        raise BackfillError(f"{chunk.partition}: a skipped chunk does not start")
    return LedgerEntry(
        partition=chunk.partition, version=version, run_id=chunk.run_id, status=Status.RUNNING,
        attempts=max(chunk.attempt, entry.attempts if entry and entry.version == version else 0),
    )


def succeeded(entry: LedgerEntry, rows: int | None, checksum: str | None) -> LedgerEntry:
    """``running`` -> ``success`` with the output partition's rows and checksum."""
    _require(entry, Status.RUNNING, "succeed")
    return replace(entry, status=Status.SUCCESS, rows=rows, checksum=checksum)


def failed(entry: LedgerEntry) -> LedgerEntry:
    """``running`` -> ``failed`` (rows and checksum cleared: the output is not trusted)."""
    _require(entry, Status.RUNNING, "fail")
    return replace(entry, status=Status.FAILED, rows=None, checksum=None)


def _require(entry: LedgerEntry, status: Status, what: str) -> None:
    if entry.status is not status:
        raise BackfillError(f"{entry.partition}: cannot {what} from {entry.status} (expected {status})")
