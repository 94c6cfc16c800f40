"""BackfillEngine against an in-memory Airflow and Presto: retries with new run ids, the ledger,
idempotent second runs, adoption of runs a lost ledger forgot, bounded parallelism, resume after a
timeout, and the audit record."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from controller.audit.ledger import Ledger
from controller.engine.backfill import BackfillEngine, BackfillRequest
from controller.model.errors import ConflictError
from controller.plan.backfill import Decision, run_id
from controller.plan.resources import DagResource, ResourceKind
from controller.store.db import Store

R, V, DAG = "host-metrics", "1.0.0", "host_metrics_daily__dev"
DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]


class FakeAirflow:
    """Runs advance one state per poll: queued -> running -> success (or failed)."""

    def __init__(self, fail_first: Sequence[str] = (), conflict_first: Sequence[str] = (), hang: bool = False):
        self.runs: dict[str, dict[str, Any]] = {}
        self.triggers: list[str] = []
        self.fail_first = set(fail_first)
        self.conflict_first = set(conflict_first)
        self.hang = hang
        self.max_in_flight = 0
        self.dates: set[datetime] = set()

    def _in_flight(self) -> int:
        return sum(r["state"] in ("queued", "running") for r in self.runs.values())

    def trigger_run(self, dag_id: str, rid: str, conf: dict[str, Any], logical_date: datetime | None = None) -> str:
        assert dag_id == DAG and logical_date is not None
        if rid in self.runs:
            return str(self.runs[rid]["state"])
        part = conf["partition"]
        if part in self.conflict_first and conf["pipectl"]["attempt"] == 1:
            raise ConflictError(f"airflow: run {rid} conflicts with another run (same logical date?)")
        assert logical_date not in self.dates, "one run per logical date"
        self.dates.add(logical_date)
        fails = part in self.fail_first and "__r" not in rid
        self.runs[rid] = {"state": "queued", "polls": 0, "fails": fails, "conf": conf}
        self.triggers.append(rid)
        self.max_in_flight = max(self.max_in_flight, self._in_flight())
        return "queued"

    def run_state(self, dag_id: str, rid: str) -> str | None:
        run = self.runs.get(rid)
        if run is None:
            return None
        if run["state"] in ("queued", "running") and not self.hang:
            run["polls"] += 1
            if run["polls"] >= 2:
                run["state"] = "failed" if run["fails"] else "success"
            else:
                run["state"] = "running"
        return str(run["state"])

    def observe(self, kind: ResourceKind, names: Sequence[str]) -> dict[str, Any]:
        return {
            DAG: DagResource(name=DAG, file_name=f"{DAG}.py", source_digest="sha256:x", version=V, paused=False)
        }


class FakePresto:
    catalog = "hive"

    def __init__(self) -> None:
        self.data: dict[str, tuple[int, str]] = {d: (10 + i, f"{i:016X}") for i, d in enumerate(DAYS)}
        self.queries: list[str] = []

    def query(self, sql: str, *, op: str = "query") -> list[tuple[Any, ...]]:
        self.queries.append(sql)
        if sql.startswith("SHOW COLUMNS"):
            return [("host", "varchar", "", ""), ("samples", "bigint", "", ""), ("dt", "varchar", "partition key", "")]
        assert 'checksum(ROW("host", "samples"))' in sql and '"hive"."dev_telemetry"."host_metrics_daily"' in sql
        part = sql.rsplit("'", 2)[1]
        return [self.data.get(part, (0, None))]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'state.db'}")


def request(**kw: Any) -> BackfillRequest:
    base: dict[str, Any] = dict(
        release=R, stage="dev", dag_id=DAG, version=V, partitions=DAYS, conf={"stage_prefix": "dev_"},
        output_table="dev_telemetry.host_metrics_daily", parallelism=2, retries=2,
        inputs=["hive:dev_telemetry.host_metrics_1m"],
    )
    base.update(kw)
    return BackfillRequest(**base)


def engine(store: Store, airflow: FakeAirflow, presto: FakePresto | None = None) -> BackfillEngine:
    return BackfillEngine(store, airflow, presto or FakePresto(), ledger=Ledger(store), poll_interval=0, sleep=lambda s: None)


def ledger_of(store: Store) -> dict[str, tuple[Any, ...]]:
    return {
        r["partition"]: (r["version"], r["run_id"], r["status"], r["attempts"], r["rows"], r["checksum"])
        for r in store.backfill_rows(R, "dev")
    }


def test_failed_chunk_is_retried_under_a_new_run_id_and_the_ledger_shows_it(store: Store) -> None:
    af = FakeAirflow(fail_first=["2026-03-02"])
    events: list[tuple[str, str]] = []
    report = engine(store, af).run(request(), lambda e, p, d: events.append((e, p)))
    assert report.outcome == "succeeded" and report.runs_started == 4
    # The retry goes to the front of the queue: it starts before the partition still waiting.
    assert af.triggers == [
        run_id(R, V, "2026-03-01"), run_id(R, V, "2026-03-02"), run_id(R, V, "2026-03-02", 2),
        run_id(R, V, "2026-03-03"),
    ]
    assert ledger_of(store) == {
        "2026-03-01": (V, run_id(R, V, "2026-03-01"), "success", 1, 10, "0000000000000000"),
        "2026-03-02": (V, run_id(R, V, "2026-03-02", 2), "success", 2, 11, "0000000000000001"),
        "2026-03-03": (V, run_id(R, V, "2026-03-03"), "success", 1, 12, "0000000000000002"),
    }
    assert ("retry-scheduled", "2026-03-02") in events and ("retry", "2026-03-02") in events
    conf = af.runs[run_id(R, V, "2026-03-02", 2)]["conf"]
    assert conf["partition"] == "2026-03-02" and conf["stage_prefix"] == "dev_"
    assert conf["pipectl"] == {"kind": "backfill", "release": R, "stage": "dev", "version": V, "attempt": 2}
    assert af.max_in_flight <= 2

    [rec] = Ledger(store).records(R)
    assert rec["kind"] == "backfill" and rec["outcome"] == "succeeded" and rec["version"] == V
    assert rec["lineage"] == {
        "inputs": ["hive:dev_telemetry.host_metrics_1m"], "outputs": ["hive:dev_telemetry.host_metrics_daily"],
        "columns": {},
    }
    assert any(a.startswith("2026-03-02: success run=pipectl_backfill__host-metrics__1.0.0__2026-03-02__r2 attempts=2")
               for a in rec["actions"])


def test_a_second_identical_backfill_starts_nothing_and_verifies_the_output(store: Store) -> None:
    af, presto = FakeAirflow(), FakePresto()
    engine(store, af, presto).run(request())
    before = ledger_of(store)
    triggers = len(af.triggers)
    report = engine(store, af, presto).run(request())
    assert len(af.triggers) == triggers and report.runs_started == 0
    assert [o.status for o in report.outcomes] == ["skipped"] * 3
    assert all("unchanged" in o.message for o in report.outcomes)
    assert ledger_of(store) == before
    # Output changed behind the ledger's back: reported, not re-run.
    presto.data["2026-03-01"] = (99, "FF")
    report = engine(store, af, presto).run(request())
    assert "CHANGED" in report.outcomes[0].message and report.runs_started == 0


def test_force_reruns_completed_partitions_as_new_attempts(store: Store) -> None:
    af = FakeAirflow()
    engine(store, af).run(request(partitions=DAYS[:1]))
    report = engine(store, af).run(request(partitions=DAYS[:1], force=True))
    assert report.runs_started == 1 and report.outcomes[0].decision is Decision.RERUN
    assert af.triggers[-1] == run_id(R, V, "2026-03-01", 2)
    assert ledger_of(store)["2026-03-01"][1:4] == (run_id(R, V, "2026-03-01", 2), "success", 2)


def test_a_lost_ledger_adopts_the_existing_runs_instead_of_starting_new_ones(tmp_path: Path) -> None:
    af = FakeAirflow(fail_first=["2026-03-02"])
    engine(Store(f"sqlite:///{tmp_path / 'a.db'}"), af).run(request())
    triggers = list(af.triggers)
    fresh = Store(f"sqlite:///{tmp_path / 'b.db'}")
    report = engine(fresh, af).run(request())
    assert af.triggers == triggers and report.runs_started == 0 and report.outcome == "succeeded"
    # The failed first run is adopted as a failed attempt; its retry (already a success) as done.
    assert ledger_of(fresh)["2026-03-02"][1:4] == (run_id(R, V, "2026-03-02", 2), "success", 2)


def test_retries_are_bounded(store: Store) -> None:
    class AlwaysFails(FakeAirflow):
        def trigger_run(self, dag_id: str, rid: str, conf: dict[str, Any], logical_date: datetime | None = None) -> str:
            state = super().trigger_run(dag_id, rid, conf, logical_date)
            self.runs[rid]["fails"] = True
            return state

    af = AlwaysFails()
    report = engine(store, af).run(request(partitions=DAYS[:1], retries=1))
    assert report.outcome == "failed" and report.runs_started == 2
    assert ledger_of(store)["2026-03-01"][1:5] == (run_id(R, V, "2026-03-01", 2), "failed", 2, None)
    # The next backfill carries on with attempt 3.
    report = engine(store, af).run(request(partitions=DAYS[:1], retries=0))
    assert af.triggers[-1] == run_id(R, V, "2026-03-01", 3) and report.outcome == "failed"


def test_a_logical_date_held_by_another_run_moves_to_the_next_attempt(store: Store) -> None:
    af = FakeAirflow(conflict_first=["2026-03-01"])
    report = engine(store, af).run(request(partitions=DAYS[:1]))
    assert report.outcome == "succeeded"
    assert af.triggers == [run_id(R, V, "2026-03-01", 2)]


def test_parallelism_bounds_runs_in_flight(store: Store) -> None:
    days = [f"2026-04-{d:02d}" for d in range(1, 11)]
    af = FakeAirflow()
    presto = FakePresto()
    report = engine(store, af, presto).run(request(partitions=days, parallelism=3))
    assert report.outcome == "succeeded" and report.runs_started == 10
    assert af.max_in_flight == 3


def test_runs_left_running_at_the_timeout_are_resumed_not_restarted(store: Store) -> None:
    af = FakeAirflow(hang=True)
    ticks = iter(range(1000))
    eng = BackfillEngine(store, af, FakePresto(), poll_interval=0, sleep=lambda s: None, clock=lambda: float(next(ticks)))
    report = eng.run(request(partitions=DAYS[:2], timeout_s=5))
    assert report.outcome == "incomplete" and {o.status for o in report.outcomes} == {"running"}
    assert {r[2] for r in ledger_of(store).values()} == {"running"}
    af.hang = False
    report = engine(store, af).run(request(partitions=DAYS[:2]))
    assert report.outcome == "succeeded" and report.runs_started == 0 and len(af.triggers) == 2
    assert [o.decision for o in report.outcomes] == [Decision.RESUME, Decision.RESUME]


def test_a_run_airflow_refuses_is_a_failed_attempt_not_a_running_one(store: Store) -> None:
    from controller.model.errors import PermanentBackendError

    class Refuses(FakeAirflow):
        def trigger_run(self, dag_id: str, rid: str, conf: dict[str, Any], logical_date: datetime | None = None) -> str:
            raise PermanentBackendError("airflow", "post_dag_run: HTTP 400 BAD REQUEST: invalid conf")

    report = engine(store, Refuses()).run(request(partitions=DAYS[:1], retries=1))
    assert report.outcome == "failed" and report.runs_started == 0
    assert "HTTP 400" in report.outcomes[0].message
    assert ledger_of(store)["2026-03-01"][1:4] == (run_id(R, V, "2026-03-01", 2), "failed", 2)
