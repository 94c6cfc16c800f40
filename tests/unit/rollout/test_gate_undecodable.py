"""streamingHealth's ``maxUndecodableRecords``: the records a job could not decode (Confluent wire
format: bad header, unknown schema id, corrupt body; ``controller.jobkit.wire``) since it started."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from gate_fakes import NOW, FakeData, make_ctx

from controller.model.manifest import StreamingHealthGate
from controller.model.reasons import Verdict
from controller.rollout.gates import ProgressView, default_jobs, evaluate

TOPIC = "staging.telemetry.host_metrics"
BASE = make_ctx("staging")
JOB = default_jobs(BASE.release, BASE.stage_ctx)["host-metrics-agg"]
GATE = StreamingHealthGate.model_validate(
    {"name": "keeps-up", "type": "streamingHealth", "maxLagSeconds": 60, "maxUndecodableRecords": 3}
)
HEALTHY = ProgressView(
    batch_id=42,
    input_rows_per_second=1000.0,
    processed_rows_per_second=5000.0,
    batch_duration_ms=2000,
    source_end_offsets={TOPIC: {0: 10_000, 1: 10_000}},
    watermark=NOW - timedelta(minutes=10),
    timestamp=NOW - timedelta(seconds=5),
    undecodable_records=0,
)


def run(gate: StreamingHealthGate, **progress: Any) -> Any:
    ctx = make_ctx("staging", jobs=default_jobs(BASE.release, BASE.stage_ctx))
    data = FakeData(progress={JOB: replace(HEALTHY, **progress)}, offsets={TOPIC: {0: 10_500, 1: 10_500}})
    return evaluate(gate, ctx, data)


def test_manifest_field_is_parsed() -> None:
    assert GATE.max_undecodable_records == 3
    assert StreamingHealthGate(name="g", type="streamingHealth").max_undecodable_records is None


def test_at_or_under_the_limit_passes_with_the_count_in_evidence() -> None:
    v = run(GATE, undecodable_records=3)
    assert v.verdict is Verdict.PASS, v.message
    (ev,) = v.evidence["jobs"]
    assert (ev["undecodable_records"], ev["max_undecodable_records"]) == (3, 3)


def test_over_the_limit_fails_even_when_healthy_otherwise() -> None:
    v = run(GATE, undecodable_records=4)
    assert v.verdict is Verdict.FAIL
    assert "4 undecodable records since the job started > 3" in v.message


def test_a_job_that_reports_no_count_fails_when_the_limit_is_set() -> None:
    v = run(GATE, undecodable_records=None)
    assert v.verdict is Verdict.FAIL
    assert "reports no count of undecodable records" in v.message


def test_unset_limit_does_not_judge_but_shows_the_count() -> None:
    unset = GATE.model_copy(update={"max_undecodable_records": None})
    v = run(unset, undecodable_records=1000)
    assert v.verdict is Verdict.PASS, v.message
    (ev,) = v.evidence["jobs"]
    assert ev["undecodable_records"] == 1000
    assert "max_undecodable_records" not in ev
    assert run(unset, undecodable_records=None).verdict is Verdict.PASS
