"""streamingHealth: lag (records and seconds), batch duration, processing rate, staleness."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from gate_fakes import NOW, FakeData, load_release, make_ctx

from controller.model.errors import TransientBackendError
from controller.model.manifest import StreamingHealthGate
from controller.model.reasons import Verdict
from controller.rollout.gates import ProgressView, default_jobs, evaluate

TOPIC = "staging.telemetry.host_metrics"
GATE = StreamingHealthGate(name="keeps-up", type="streamingHealth", max_lag_seconds=60, window="1m")


def ctx(**kw: Any) -> Any:
    base = make_ctx("staging")
    return make_ctx("staging", jobs=default_jobs(base.release, base.stage_ctx), **kw)


JOB = default_jobs(make_ctx("staging").release, make_ctx("staging").stage_ctx)["host-metrics-agg"]

HEALTHY = ProgressView(
    batch_id=42,
    input_rows_per_second=1000.0,
    processed_rows_per_second=5000.0,
    batch_duration_ms=2000,
    source_end_offsets={TOPIC: {0: 10_000, 1: 10_000}},
    watermark=NOW - timedelta(minutes=10, seconds=20),
    timestamp=NOW - timedelta(seconds=5),
)


def data(progress: ProgressView | None = HEALTHY, end: dict[int, int] | None = None) -> FakeData:
    return FakeData(
        progress={JOB: progress}, offsets={TOPIC: end if end is not None else {0: 10_500, 1: 10_500}}
    )


def test_job_name_follows_plan_naming() -> None:
    assert JOB == "staging-host-metrics-host-metrics-agg-v1-0-0"


def test_healthy_job_passes_with_figures() -> None:
    v = evaluate(GATE, ctx(), data())
    assert v.verdict is Verdict.PASS, v.message
    (ev,) = v.evidence["jobs"]
    assert ev["lag_records"] == 1000
    assert ev["lag_records_by_topic"] == {TOPIC: 1000}
    assert ev["lag_seconds"] == pytest.approx(1.0)
    assert ev["batch_duration_seconds"] == 2.0
    assert ev["max_batch_duration_seconds"] is None  # judged only when the gate sets a limit
    assert ev["event_time_freshness_seconds"] == 620.0
    assert ev["progress_age_seconds"] == 5.0


NOT_CATCHING_UP = replace(HEALTHY, processed_rows_per_second=1000.0)


def test_lag_over_the_limit_fails() -> None:
    v = evaluate(GATE, ctx(), data(NOT_CATCHING_UP, end={0: 50_000, 1: 50_000}))  # 80k behind at 1k/s
    assert v.verdict is Verdict.FAIL
    assert "lag 80s (80000 records) > 60s" in v.message


def test_lag_over_the_limit_while_catching_up_is_watched() -> None:
    v = evaluate(GATE, ctx(), data(end={0: 50_000, 1: 50_000}))  # processing 5k/s for 1k/s input
    assert v.verdict is Verdict.INCONCLUSIVE
    assert "but catching up" in v.message


def test_first_batch_is_warm_up() -> None:
    v = evaluate(GATE, ctx(), data(replace(HEALTHY, batch_id=0, input_rows_per_second=0.0)))
    assert v.verdict is Verdict.INCONCLUSIVE
    assert "first batch" in v.message


def test_new_partition_not_yet_read_counts_fully() -> None:
    v = evaluate(GATE, ctx(), data(NOT_CATCHING_UP, end={0: 10_000, 1: 10_000, 2: 70_000}))
    assert v.verdict is Verdict.FAIL
    assert v.evidence["jobs"][0]["lag_records"] == 70_000


def test_slow_batches_fail_only_against_a_declared_limit() -> None:
    slow = data(replace(HEALTHY, batch_duration_ms=12_500))
    assert evaluate(GATE, ctx(), slow).verdict is Verdict.PASS  # one slow batch without a limit: noise
    strict = GATE.model_copy(update={"max_batch_duration_seconds": 10.0})
    v = evaluate(strict, ctx(), slow)
    assert v.verdict is Verdict.FAIL
    assert "batch took 12.5s > 10s" in v.message
    relaxed = GATE.model_copy(update={"max_batch_duration_seconds": 20.0})
    assert evaluate(relaxed, ctx(), slow).verdict is Verdict.PASS


def test_processing_slower_than_input_is_watched_until_it_shows_as_lag() -> None:
    v = evaluate(GATE, ctx(), data(replace(HEALTHY, processed_rows_per_second=800.0)))
    assert v.verdict is Verdict.INCONCLUSIVE
    assert "last batch processed 800.0 rows/s < 1 x input 1000.0 rows/s" in v.message
    behind = data(replace(HEALTHY, processed_rows_per_second=800.0), end={0: 50_000, 1: 50_000})
    assert evaluate(GATE, ctx(), behind).verdict is Verdict.FAIL


def test_no_input_with_backlog_bounds_lag_by_progress_age() -> None:
    stuck = replace(
        HEALTHY,
        input_rows_per_second=0.0,
        processed_rows_per_second=0.0,
        timestamp=NOW - timedelta(seconds=100),
    )
    v = evaluate(GATE, ctx(), data(stuck))
    assert v.verdict is Verdict.FAIL
    assert v.evidence["jobs"][0]["lag_seconds"] == 102.0  # 100 s old + 2 s batch
    idle = replace(stuck, timestamp=NOW - timedelta(seconds=3))
    assert evaluate(GATE, ctx(), data(idle)).verdict is Verdict.PASS


def test_no_progress_yet_is_inconclusive() -> None:
    v = evaluate(GATE, ctx(), data(None))
    assert v.verdict is Verdict.INCONCLUSIVE
    assert "no progress reported yet" in v.message


def test_stale_progress_is_inconclusive() -> None:
    v = evaluate(GATE, ctx(), data(replace(HEALTHY, timestamp=NOW - timedelta(seconds=121))))
    assert v.verdict is Verdict.INCONCLUSIVE
    assert "121s old" in v.message


def test_job_not_found_fails() -> None:
    v = evaluate(GATE, ctx(), FakeData())
    assert v.verdict is Verdict.FAIL
    assert v.message == f"{JOB}: job not found"


def test_unmapped_job_fails() -> None:
    v = evaluate(GATE, make_ctx("staging"), data())
    assert v.verdict is Verdict.FAIL
    assert "no deployed job is mapped" in v.message


def test_kafka_unavailable_is_inconclusive() -> None:
    class Down(FakeData):
        def end_offsets(self, topic: str) -> dict[int, int]:
            raise TransientBackendError("kafka", "broker unreachable")

    v = evaluate(GATE, ctx(), Down(progress={JOB: HEALTHY}))
    assert v.verdict is Verdict.INCONCLUSIVE


def test_release_without_streaming_jobs_passes() -> None:
    release = load_release(streamingJobs=[])
    v = evaluate(GATE, make_ctx("staging", release), FakeData())
    assert v.verdict is Verdict.PASS
