"""canaryComparison: the same closed windows, count tolerance, Mann-Whitney U, soak in data."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from gate_fakes import NOW, FakeData, load_release, make_ctx, metric_rows

from controller.model.manifest import CanaryComparisonGate
from controller.model.reasons import Verdict
from controller.rollout.gates import GateContext, ProgressView, default_jobs, default_tables, evaluate

GATE = CanaryComparisonGate(name="matches-baseline", type="canaryComparison", tolerance=0.02, alpha=0.01)
NEW = load_release(version="1.1.0")
LOGICAL = "telemetry.host_metrics_1m"
CANARY_TABLE = "telemetry.host_metrics_1m__v1_1_0"
BASELINE_TABLE = "telemetry.host_metrics_1m__v1_0_0"
MINUTE = timedelta(minutes=1)
T0 = NOW.replace(second=0) - timedelta(minutes=60)  # baseline's first window
C0 = NOW.replace(second=0) - timedelta(minutes=20)  # canary's first (partial) window


def canary_ctx(**kw: Any) -> GateContext:
    canary = make_ctx("canary", NEW).stage_ctx
    prod = make_ctx("prod", NEW).stage_ctx
    args: dict[str, Any] = {
        "canary_tables": {LOGICAL: default_tables(NEW, canary)[LOGICAL]},
        "baseline_tables": {LOGICAL: default_tables(NEW, prod, "1.0.0")[LOGICAL]},
        "jobs": default_jobs(NEW, canary),
        "baseline_jobs": default_jobs(NEW, prod, "1.0.0"),
    }
    args.update(kw)
    return make_ctx("canary", NEW, **args)


CTX = canary_ctx()
CANARY_JOB = CTX.jobs["host-metrics-agg"]
BASELINE_JOB = CTX.baseline_jobs["host-metrics-agg"]


def progress(watermark_age: timedelta | None = timedelta(minutes=10)) -> ProgressView:
    return ProgressView(
        batch_id=7,
        input_rows_per_second=100.0,
        processed_rows_per_second=900.0,
        batch_duration_ms=1000,
        source_end_offsets={},
        watermark=None if watermark_age is None else NOW - watermark_age,
        timestamp=NOW - timedelta(seconds=3),
    )


def world(canary_rows: list[Any], baseline_rows: list[Any] | None = None, **kw: Any) -> FakeData:
    d = FakeData(progress={CANARY_JOB: progress(), BASELINE_JOB: progress()})
    d.progress.update(kw.get("progress", {}))
    d.table(CANARY_TABLE, canary_rows)
    d.table(BASELINE_TABLE, baseline_rows if baseline_rows is not None else metric_rows(T0, 60))
    return d


def canary_rows(**kw: Any) -> list[Any]:
    return metric_rows(C0, 20, **kw)


def test_names_follow_plan_naming() -> None:
    assert CTX.canary_tables[LOGICAL] == CANARY_TABLE
    assert CTX.baseline_tables[LOGICAL] == BASELINE_TABLE
    assert CANARY_JOB == "prod-host-metrics-host-metrics-agg-v1-1-0"
    assert BASELINE_JOB == "prod-host-metrics-host-metrics-agg-v1-0-0"


def test_identical_outputs_pass() -> None:
    v = evaluate(GATE, CTX, world(canary_rows()))
    assert v.verdict is Verdict.PASS, v.message
    (ev,) = v.evidence["tables"]
    # closed on both: window_start < (now - 10m) - 1m; from the canary's second window (C0 + 1m)
    assert ev["windows"]["count"] == 8
    assert ev["windows"]["first"] == (C0 + MINUTE).isoformat()
    assert ev["windows"]["last"] == (NOW - timedelta(minutes=12)).isoformat()
    samples, avg = metric(ev, "samples"), metric(ev, "avg_value")
    assert samples["canary_total"] == samples["baseline_total"] == 8 * 8 * 100
    assert samples["statistic"] == "relativeTotal" and samples["value"] == 0.0
    assert samples["threshold"] == 0.02
    assert avg["statistic"] == "mannWhitneyU" and avg["p_value"] == pytest.approx(1.0)
    assert avg["samples"] == {"canary": 64, "baseline": 64}
    assert avg["threshold"] == 0.01
    # the example table gets the default profile: the comparison from before templates
    assert ev["columns"]["origin"] == dict.fromkeys(("keys", "window", "metrics"), "default profile")
    assert ev["columns"]["keys"] == ["host", "metric"]
    assert ev["watermarks"]["canary"]["source"] == f"job {CANARY_JOB}"
    assert "matches the baseline over 8 closed windows" in v.message


def test_a_five_percent_drop_fails() -> None:
    v = evaluate(GATE, CTX, world(canary_rows(drop=0.05)))
    assert v.verdict is Verdict.FAIL
    assert "-5.00%" in v.message and "tolerance 2.00%" in v.message
    ev = v.evidence["tables"][0]
    assert metric(ev, "samples")["value"] == pytest.approx(-0.05)
    assert ev["per_window_columns"][3:] == ["canary_samples", "baseline_samples"]
    assert ev["per_window"][0] == [(C0 + MINUTE).isoformat(), 8, 8, 95 * 8, 100 * 8]


def test_a_drop_within_tolerance_passes() -> None:
    v = evaluate(GATE, CTX, world(canary_rows(drop=0.01)))
    assert v.verdict is Verdict.PASS, v.message


def test_shifted_values_fail_the_mann_whitney_test() -> None:
    v = evaluate(GATE, CTX, world(canary_rows(value=80.0)))
    assert v.verdict is Verdict.FAIL
    assert "avg_value mannWhitneyU p=" in v.message
    mw = metric(v.evidence["tables"][0], "avg_value")
    assert mw["p_value"] < 0.01
    assert mw["u"] == 64 * 64  # every canary value is above every baseline value


def test_a_lost_window_counts_as_zero() -> None:
    lost = C0 + timedelta(minutes=4)
    rows = [r for r in canary_rows() if r[2] != lost]
    v = evaluate(GATE, CTX, world(rows))
    assert v.verdict is Verdict.FAIL
    assert [lost.isoformat(), 0, 8, 0, 800] in v.evidence["tables"][0]["per_window"]


def test_too_few_closed_windows_is_inconclusive() -> None:
    rows = metric_rows(NOW.replace(second=0) - timedelta(minutes=13), 13)
    v = evaluate(GATE, CTX, world(rows))
    assert v.verdict is Verdict.INCONCLUSIVE
    assert "soaking, 1 of 3 closed windows" in v.message


def test_the_older_watermark_decides_which_windows_are_closed() -> None:
    lagging = {BASELINE_JOB: progress(timedelta(minutes=16))}
    v = evaluate(GATE, CTX, world(canary_rows(), progress=lagging))
    assert v.evidence["tables"][0]["windows"]["count"] == 2
    assert v.verdict is Verdict.INCONCLUSIVE


def test_no_watermark_yet_is_inconclusive() -> None:
    v = evaluate(GATE, CTX, world(canary_rows(), progress={CANARY_JOB: progress(None)}))
    assert v.verdict is Verdict.INCONCLUSIVE
    assert "waiting for the first watermark" in v.message
    v = evaluate(GATE, CTX, world(canary_rows(), progress={CANARY_JOB: None}))
    assert v.verdict is Verdict.INCONCLUSIVE


def test_canary_job_not_deployed_fails() -> None:
    d = world(canary_rows())
    del d.progress[CANARY_JOB]
    v = evaluate(GATE, CTX, d)
    assert v.verdict is Verdict.FAIL
    assert "not deployed" in v.message


def test_empty_canary_is_inconclusive() -> None:
    v = evaluate(GATE, CTX, world([]))
    assert v.verdict is Verdict.INCONCLUSIVE
    assert "has written no windows yet" in v.message


def test_tables_without_a_mapped_writer_use_their_newest_window() -> None:
    ctx = canary_ctx(jobs={}, baseline_jobs={})
    v = evaluate(GATE, ctx, world(canary_rows()))
    assert v.verdict is Verdict.PASS, v.message
    ev = v.evidence["tables"][0]
    assert ev["watermarks"]["canary"]["source"] == "data: end of the newest window"
    assert ev["windows"]["count"] == 18  # all but the first (partial) and the newest (open)


def test_no_baseline_passes_and_an_unmapped_canary_waits() -> None:
    v = evaluate(GATE, canary_ctx(baseline_tables={}), FakeData())
    assert v.verdict is Verdict.PASS
    assert v.message == "no baseline version at stage canary to compare against"
    assert evaluate(GATE, canary_ctx(canary_tables={}), FakeData()).verdict is Verdict.INCONCLUSIVE


def test_mapping_without_common_tables_fails() -> None:
    v = evaluate(GATE, canary_ctx(baseline_tables={"telemetry.other": "telemetry.other"}), FakeData())
    assert v.verdict is Verdict.FAIL


def test_declared_columns_are_used() -> None:
    gate = GATE.model_copy(update={"keys": ["host"]})
    v = evaluate(gate, CTX, world(canary_rows()))
    assert v.verdict is Verdict.PASS, v.message
    ev = v.evidence["tables"][0]
    assert 'GROUP BY "host", "window_start"' in ev["canary_keys_sql"]
    # keys declared: window and metrics inferred (the partition-less fake: every numeric column)
    assert ev["columns"]["origin"] == {"keys": "declared", "window": "inferred", "metrics": "inferred"}
    assert [m["column"] for m in ev["metrics"]] == ["samples", "avg_value", "max_value"]
    bad = GATE.model_copy(update={"keys": ["region"]})
    v = evaluate(bad, CTX, world(canary_rows()))
    assert v.verdict is Verdict.FAIL
    assert "lacks column(s) region" in v.message


def metric(table_ev: dict[str, Any], column: str) -> dict[str, Any]:
    (found,) = [m for m in table_ev["metrics"] if m["column"] == column]
    return dict(found)


def test_a_canary_older_than_a_young_baseline_is_compared_only_where_both_are_whole() -> None:
    """The canary replays from before the baseline's job started (a release promoted to prod a
    minute before its next version reached canary): the baseline's first window is partial and the
    windows before it are missing. Only windows from the baseline's first complete one count."""
    b0 = C0 + 4 * MINUTE
    baseline = metric_rows(b0, 16)
    baseline = [(*r[:3], 30, *r[4:]) if r[2] == b0 else r for r in baseline]  # its first: partial
    v = evaluate(GATE, CTX, world(canary_rows(), baseline))
    assert v.verdict is Verdict.PASS, v.message
    (ev,) = v.evidence["tables"]
    assert ev["windows"]["first"] == (b0 + MINUTE).isoformat()
    assert ev["windows"]["baseline_first_complete"] == (b0 + MINUTE).isoformat()
    assert ev["windows"]["count"] == 8 - 4
