"""canaryComparison ``providers`` (``controller.rollout.canary_providers``), pure: Prometheus
queries with ``{{version}}``/``{{stage}}`` per side and Kafka lag from job progress, judged like
relativeTotal; the gate's verdict is the worse of the tables' and the providers'."""

from __future__ import annotations

from typing import Any

from controller.model.errors import PermanentBackendError, TransientBackendError
from controller.model.manifest import CanaryComparisonGate
from controller.model.reasons import Verdict
from controller.rollout.canary import evaluate_canary
from controller.rollout.canary_providers import compare
from controller.rollout.context import ProgressView
from tests.unit.rollout.gate_fakes import NOW, FakeData, make_ctx

JOB = "host-metrics-agg"


def gate(*providers: dict[str, Any], **fields: Any) -> CanaryComparisonGate:
    return CanaryComparisonGate.model_validate(
        {"name": "cmp", "type": "canaryComparison", "providers": list(providers), **fields}
    )


def prom(query: str, **kw: Any) -> dict[str, Any]:
    return {"name": "errors", "prometheus": {"query": query}, **kw}


Q = 'sum(rate(errors_total{version="{{version}}", stage="{{stage}}"}[1m]))'


def ctx(**kw: Any) -> Any:
    return make_ctx("canary", baseline_version="0.9.0", **kw)


def test_prometheus_query_per_side_passes_within_threshold() -> None:
    c = ctx()
    assert c.version == "1.0.0"  # the example release's
    data = FakeData(metrics={
        'sum(rate(errors_total{version="1.0.0", stage="canary"}[1m]))': [1.05],
        'sum(rate(errors_total{version="0.9.0", stage="prod"}[1m]))': [0.6, 0.4],  # series summed
    })  # fmt: skip
    v = evaluate_canary(gate(prom(Q, threshold=0.1)), c, data)
    assert v.verdict is Verdict.PASS, v.message
    assert [a for _q, a in data.promql] == [NOW, NOW]  # evaluated at the gate's now
    ev = v.evidence["providers"][0]
    assert ev["canary_query"] == 'sum(rate(errors_total{version="1.0.0", stage="canary"}[1m]))'
    assert ev["baseline_query"] == 'sum(rate(errors_total{version="0.9.0", stage="prod"}[1m]))'
    assert abs(ev["value"] - 0.05) < 1e-9 and ev["threshold"] == 0.1


def test_prometheus_query_fails_beyond_threshold_and_default_tolerance() -> None:
    c = ctx()
    data = FakeData(metrics={f"errors{{v='{c.version}'}}": [2.0], "errors{v='0.9.0'}": [1.0]})
    v = evaluate_canary(gate(prom("errors{v='{{version}}'}")), c, data)
    assert v.verdict is Verdict.FAIL
    assert "errors 2 vs baseline 1 (+100.00%, threshold 2.00%)" in v.message  # gate tolerance 0.02


def test_no_series_is_inconclusive() -> None:
    # a stage without a Prometheus endpoint: tests/unit/engine/test_gating.py
    v = evaluate_canary(gate(prom("x")), ctx(), FakeData())
    assert v.verdict is Verdict.INCONCLUSIVE and "the canary's query returned no series: x" in v.message


def test_backend_errors() -> None:
    down = FakeData(raise_on_promql=TransientBackendError("prometheus", "connection refused"))
    assert evaluate_canary(gate(prom("x")), ctx(), down).verdict is Verdict.INCONCLUSIVE
    bad = FakeData(raise_on_promql=PermanentBackendError("prometheus", "bad_data: parse error"))
    v = evaluate_canary(gate(prom("x")), ctx(), bad)
    assert v.verdict is Verdict.FAIL and "parse error" in v.message


def test_without_a_baseline_version_providers_pass() -> None:
    v = evaluate_canary(gate(prom("x")), make_ctx("canary"), FakeData())
    assert v.verdict is Verdict.PASS and "no baseline version" in v.message


def _progress(offsets: dict[int, int]) -> ProgressView:
    return ProgressView(3, 10.0, 12.0, 100.0, {"events": offsets}, None, NOW, 5)


def test_kafka_lag_of_the_sides_jobs() -> None:
    c = ctx(jobs={JOB: "canary-job"}, baseline_jobs={JOB: "prod-job"})
    data = FakeData(
        progress={"canary-job": _progress({0: 90, 1: 100}), "prod-job": _progress({0: 95, 1: 100})},
        offsets={"events": {0: 100, 1: 110}},
    )
    lag = {"name": "lag", "kafkaLag": {"job": JOB}, "threshold": 0.5}
    v = evaluate_canary(gate(lag), c, data)
    # canary: 10 + 10 = 20 records behind, baseline: 5 + 10 = 15 → +33 % ≤ 50 %
    assert v.verdict is Verdict.PASS, v.message
    ev = v.evidence["providers"][0]
    assert (ev["canary_total"], ev["baseline_total"]) == (20.0, 15.0)
    assert ev["canary_lag_by_topic"] == {"events": 20} and ev["baseline_job"] == "prod-job"
    strict = evaluate_canary(gate({**lag, "threshold": 0.1}), c, data)
    assert strict.verdict is Verdict.FAIL


def test_kafka_lag_waits_for_progress_and_rejects_unknown_jobs() -> None:
    c = ctx(jobs={JOB: "canary-job"}, baseline_jobs={JOB: "prod-job"})
    data = FakeData(progress={"canary-job": None, "prod-job": _progress({0: 1})}, offsets={"events": {0: 1}})
    v = evaluate_canary(gate({"name": "lag", "kafkaLag": {"job": JOB}}), c, data)
    assert v.verdict is Verdict.INCONCLUSIVE and "no progress yet" in v.message
    v = evaluate_canary(gate({"name": "lag", "kafkaLag": {"job": "nope"}}), c, data)
    assert v.verdict is Verdict.FAIL and "no streaming job" in v.message


def test_compare_zero_and_allowance() -> None:
    assert compare("lag", 0, 0, 0.1, 0).verdict is Verdict.PASS  # a measured zero is a value
    assert compare("lag", 4, 0, 0.1, 0).verdict is Verdict.FAIL  # zero baseline, non-zero canary
    ok = compare("lag", 4, 0, 0.1, 5)
    assert ok.verdict is Verdict.PASS and "within the allowance" in ok.note
    assert compare("lag", 106, 100, 0.05, 0).verdict is Verdict.FAIL
    assert compare("lag", 104, 100, 0.05, 0).verdict is Verdict.PASS


def test_tables_and_providers_combine_to_the_worse() -> None:
    c = ctx(baseline_tables={"telemetry.host_metrics_1m": "prod.t"}, canary_tables={})
    data = FakeData(metrics={f"q{{v='{c.version}'}}": [1.0], "q{v='0.9.0'}": [1.0]})
    v = evaluate_canary(gate(prom("q{v='{{version}}'}")), c, data)
    # the tables' side is inconclusive (canary outputs not mapped), the provider passes
    assert v.verdict is Verdict.INCONCLUSIVE and "providers" in v.evidence


def test_kafka_lag_of_a_consumer_group_per_side() -> None:
    data = FakeData(
        groups={"agg-1.0.0": {"events": {0: 100, 1: 110}}, "agg-0.9.0": {"events": {0: 40}}},
        offsets={"events": {0: 100, 1: 110}},
    )
    lag = {"name": "lag", "kafkaLag": {"consumerGroup": "agg-{{version}}"}, "allowance": 0}
    v = evaluate_canary(gate(lag), ctx(), data)
    # canary caught up (0), baseline 60 + 110 (partition 1 never committed) behind: -100 % fails
    assert v.verdict is Verdict.FAIL, v.message
    ev = v.evidence["providers"][0]
    assert (ev["canary_total"], ev["baseline_total"]) == (0.0, 170.0)
    assert ev["canary_group"] == "agg-1.0.0" and ev["baseline_lag_by_topic"] == {"events": 170}
    unknown = evaluate_canary(gate({**lag, "kafkaLag": {"consumerGroup": "nobody"}}), ctx(), data)
    assert unknown.verdict is Verdict.INCONCLUSIVE and "committed no offsets" in unknown.message
