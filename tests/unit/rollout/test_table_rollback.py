"""Which snapshot each Iceberg table goes back to for a failed in-place version
(controller.rollout.table_rollback): the one recorded before the failed version's first run."""

from __future__ import annotations

from controller.rollout.table_rollback import RecordedRun, RollbackTarget, attempt_start, rollback_targets


def run(kind: str, version: str, unreadable: frozenset[str] = frozenset(), **snaps: str | None) -> RecordedRun:
    return RecordedRun(kind=kind, version=version, snapshots=snaps, unreadable=unreadable)


def test_the_snapshot_recorded_before_the_failed_versions_first_run() -> None:
    runs = [
        run("apply", "1.0.0", events="10"),
        run("promotion", "1.0.0", events="11"),
        run("apply", "1.1.0", events="12"),  # may already hold 1.1.0's commits
        run("gate", "1.1.0", events="13"),
    ]
    assert rollback_targets(runs, "1.1.0", ["events"]) == [
        RollbackTarget("events", "11", "recorded by the promotion of 1.0.0 before 1.1.0's first run")
    ]


def test_each_table_takes_the_latest_earlier_record_that_lists_it() -> None:
    runs = [
        run("apply", "1.0.0", events="10", totals="20"),
        run("apply", "1.0.1", events="11"),  # totals not listed (e.g. not read by this run)
        run("apply", "1.1.0", events="12", totals="22"),
    ]
    targets = rollback_targets(runs, "1.1.0", ["events", "totals", "newtable"])
    assert [(t.table, t.snapshot_id) for t in targets] == [("events", "11"), ("totals", "20"), ("newtable", None)]
    assert targets[2].reason == "no record before 1.1.0 lists it"


def test_no_target_for_an_unreadable_or_empty_table() -> None:
    runs = [
        run("apply", "1.0.0", events="10", totals="20"),
        run("apply", "1.0.1", unreadable=frozenset({"events"}), events=None, totals=None),
        run("apply", "1.1.0", events="12", totals="22"),
    ]
    unreadable, empty = rollback_targets(runs, "1.1.0", ["events", "totals"])
    assert unreadable.snapshot_id is None and "(apply of 1.0.1) could not read it" in unreadable.reason
    assert empty == RollbackTarget("totals", None, "it had no data before 1.1.0")


def test_a_retried_version_is_rolled_back_to_before_its_latest_attempt() -> None:
    runs = [
        run("apply", "1.0.0", events="10"),
        run("apply", "1.1.0", events="11"),
        run("rollback", "1.0.0", events="10"),  # the first attempt rolled back
        run("apply", "1.0.0", events="14"),
        run("apply", "1.1.0", events="15"),
    ]
    assert attempt_start(runs, "1.1.0") == 4
    assert [t.snapshot_id for t in rollback_targets(runs, "1.1.0", ["events"])] == ["14"]


def test_a_rollback_record_counts_as_the_state_before_the_next_attempt() -> None:
    runs = [run("apply", "1.1.0", events="11"), run("rollback", "1.0.0", events="10"), run("apply", "1.1.0", events="12")]
    assert [t.snapshot_id for t in rollback_targets(runs, "1.1.0", ["events"])] == ["10"]


def test_no_target_when_the_failed_version_never_ran_or_only_gated() -> None:
    runs = [run("apply", "1.0.0", events="10"), run("gate", "1.1.0", events="10")]
    assert attempt_start(runs, "1.1.0") is None
    assert rollback_targets(runs, "1.1.0", ["events"]) == [
        RollbackTarget("events", None, "no recorded run of 1.1.0 to roll back")
    ]
