"""Backfill planning (controller.plan.backfill): partitions, run ids, logical dates, decisions and
ledger transitions."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from controller.plan.backfill import (
    BackfillError,
    Decision,
    LedgerEntry,
    Status,
    decide,
    failed,
    logical_date,
    next_attempt,
    parse_day,
    partitions,
    plan_chunks,
    run_id,
    started,
    succeeded,
)

R, V = "host-metrics", "1.0.0"


def entry(part: str, status: Status, attempts: int = 1, version: str = V, **kw: object) -> LedgerEntry:
    return LedgerEntry(part, version, run_id(R, version, part, max(1, attempts)), status, attempts, **kw)  # type: ignore[arg-type]


# --- partitions -----------------------------------------------------------------------------------


def test_one_partition_per_day_both_ends_included() -> None:
    assert partitions(date(2026, 2, 27), date(2026, 3, 2)) == [
        "2026-02-27", "2026-02-28", "2026-03-01", "2026-03-02",
    ]
    assert partitions(date(2026, 3, 1), date(2026, 3, 1)) == ["2026-03-01"]
    assert partitions(date(2024, 2, 28), date(2024, 3, 1))[1] == "2024-02-29"  # leap day


def test_bad_ranges_and_dates_are_refused() -> None:
    with pytest.raises(BackfillError, match="before --from"):
        partitions(date(2026, 3, 2), date(2026, 3, 1))
    with pytest.raises(BackfillError, match="split the backfill"):
        partitions(date(2000, 1, 1), date(2026, 1, 1))
    for bad in ("2026-3-1", "2026-02-30", "20260301", "2026-03-01T00:00"):
        with pytest.raises(BackfillError):
            parse_day(bad)


# --- run ids and logical dates -------------------------------------------------------------------


def test_run_ids_are_deterministic_and_airflow_safe() -> None:
    assert run_id(R, V, "2026-03-01") == "pipectl_backfill__host-metrics__1.0.0__2026-03-01"
    assert run_id(R, V, "2026-03-01", 1) == run_id(R, V, "2026-03-01")
    assert run_id(R, V, "2026-03-01", 3) == "pipectl_backfill__host-metrics__1.0.0__2026-03-01__r3"
    assert run_id(R, "1.2.0-rc.1+b7", "2026-03-01") == "pipectl_backfill__host-metrics__1.2.0-rc.1+b7__2026-03-01"
    with pytest.raises(BackfillError, match="not a valid Airflow run id"):
        run_id("has space", V, "2026-03-01")
    with pytest.raises(BackfillError, match="out of range"):
        run_id(R, V, "2026-03-01", 0)
    with pytest.raises(BackfillError):
        run_id(R, V, "2026/03/01")


def test_each_attempt_has_its_own_logical_date_on_the_same_day() -> None:
    assert logical_date("2026-03-01") == datetime(2026, 3, 1, tzinfo=UTC)
    assert logical_date("2026-03-01", 2) == datetime(2026, 3, 1, 0, 0, 1, tzinfo=UTC)
    dates = {logical_date("2026-03-01", k) for k in range(1, 60)}
    assert len(dates) == 59 and {d.date() for d in dates} == {date(2026, 3, 1)}
    with pytest.raises(BackfillError):
        logical_date("2026-03-01", 60)


# --- decisions ------------------------------------------------------------------------------------


def test_decisions_follow_the_ledger() -> None:
    p = "2026-03-01"
    new = decide(R, V, p, None)
    assert (new.decision, new.attempt, new.run_id) == (Decision.RUN, 1, run_id(R, V, p))
    assert new.starts_run

    done = decide(R, V, p, entry(p, Status.SUCCESS, rows=3, checksum="ab"))
    assert (done.decision, done.run_id) == (Decision.SKIP, run_id(R, V, p)) and not done.starts_run
    assert "3 rows" in done.reason

    forced = decide(R, V, p, entry(p, Status.SUCCESS, attempts=1), force=True)
    assert (forced.decision, forced.attempt, forced.run_id) == (Decision.RERUN, 2, run_id(R, V, p, 2))

    retry = decide(R, V, p, entry(p, Status.FAILED, attempts=2))
    assert (retry.decision, retry.attempt, retry.run_id) == (Decision.RETRY, 3, run_id(R, V, p, 3))
    assert retry.logical_date == logical_date(p, 3)

    resume = decide(R, V, p, entry(p, Status.RUNNING, attempts=2))
    assert (resume.decision, resume.attempt, resume.run_id) == (Decision.RESUME, 2, run_id(R, V, p, 2))
    assert not resume.starts_run

    # Another version: a new run of this version, its attempts counted afresh.
    other = decide(R, "1.1.0", p, entry(p, Status.SUCCESS, attempts=4))
    assert (other.decision, other.attempt, other.run_id) == (Decision.RUN, 1, run_id(R, "1.1.0", p))


def test_plan_chunks_keeps_partition_order_and_skips_only_completed() -> None:
    days = ["2026-03-01", "2026-03-02", "2026-03-03"]
    ledger = {"2026-03-02": entry("2026-03-02", Status.SUCCESS), "2026-03-03": entry("2026-03-03", Status.FAILED)}
    chunks = plan_chunks(R, V, days, ledger)
    assert [(c.partition, c.decision) for c in chunks] == [
        ("2026-03-01", Decision.RUN), ("2026-03-02", Decision.SKIP), ("2026-03-03", Decision.RETRY),
    ]
    # The same inputs give the same plan.
    assert plan_chunks(R, V, days, ledger) == chunks
    assert [c.decision for c in plan_chunks(R, V, days, ledger, force=True)] == [
        Decision.RUN, Decision.RERUN, Decision.RETRY,
    ]
    with pytest.raises(BackfillError, match="repeat"):
        plan_chunks(R, V, ["2026-03-01", "2026-03-01"], {})


def test_next_attempt_moves_to_a_new_run_id_and_second() -> None:
    first = decide(R, V, "2026-03-01", None)
    second = next_attempt(R, V, first)
    third = next_attempt(R, V, second)
    assert [c.run_id for c in (first, second, third)] == [
        run_id(R, V, "2026-03-01"), run_id(R, V, "2026-03-01", 2), run_id(R, V, "2026-03-01", 3),
    ]
    assert third.logical_date == datetime(2026, 3, 1, 0, 0, 2, tzinfo=UTC)
    assert second.decision is Decision.RETRY


# --- ledger transitions ----------------------------------------------------------------------------


def test_ledger_transitions_run_fail_retry_succeed() -> None:
    p = "2026-03-01"
    ch = decide(R, V, p, None)
    e1 = started(None, ch, V)
    assert (e1.status, e1.attempts, e1.run_id, e1.rows) == (Status.RUNNING, 1, run_id(R, V, p), None)
    e2 = failed(e1)
    assert (e2.status, e2.attempts) == (Status.FAILED, 1)
    retry = decide(R, V, p, e2)
    e3 = started(e2, retry, V)
    assert (e3.status, e3.attempts, e3.run_id) == (Status.RUNNING, 2, run_id(R, V, p, 2))
    e4 = succeeded(e3, 42, "00ff")
    assert (e4.status, e4.attempts, e4.rows, e4.checksum) == (Status.SUCCESS, 2, 42, "00ff")
    # A resumed run keeps its attempt count.
    resumed = started(e3, decide(R, V, p, e3), V)
    assert (resumed.attempts, resumed.run_id) == (2, run_id(R, V, p, 2))


def test_invalid_transitions_are_refused() -> None:
    p = "2026-03-01"
    done = entry(p, Status.SUCCESS, rows=1, checksum="x")
    with pytest.raises(BackfillError, match="cannot fail"):
        failed(done)
    with pytest.raises(BackfillError, match="cannot succeed"):
        succeeded(entry(p, Status.FAILED), 1, "x")
    with pytest.raises(BackfillError, match="does not start"):
        started(done, decide(R, V, p, done), V)


def test_failure_clears_the_measured_output() -> None:
    p = "2026-03-01"
    e = started(entry(p, Status.SUCCESS, rows=5, checksum="aa"), decide(R, V, p, entry(p, Status.SUCCESS), force=True), V)
    assert (e.rows, e.checksum, e.attempts) == (None, None, 2)
    assert failed(e).rows is None
