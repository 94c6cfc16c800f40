"""canaryComparison on a table of another shape: declared columns, inference, templates."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from gate_fakes import NOW, FakeData, load_release, make_ctx

from controller.model.analysis import AnalysisTemplate
from controller.model.manifest import CanaryComparisonGate, Environment
from controller.model.reasons import Verdict
from controller.plan.desired import StageContext
from controller.rollout.gates import GateContext, evaluate

REL = load_release(version="1.1.0")
LOGICAL = "web.requests_1m"
CANARY, BASELINE = "web.requests_1m__v1_1_0", "web.requests_1m__v1_0_0"
COLUMNS = ("service", "endpoint", "minute", "requests", "latency_ms")
TYPES = ("varchar", "varchar", "timestamp", "bigint", "double")
START = NOW.replace(second=0) - timedelta(minutes=30)


def rows(latency: Any = lambda k, m: 100.0 + 10 * k + (m % 3)) -> list[tuple[Any, ...]]:
    out = []
    for m in range(30):
        for k, (svc, ep) in enumerate([(s, e) for s in ("api", "web") for e in ("/a", "/b", "/c")]):
            out.append((svc, ep, START + timedelta(minutes=m), 50, latency(k, m)))
    return out


def world(canary: list[tuple[Any, ...]]) -> FakeData:
    d = FakeData()
    d.table(CANARY, canary, COLUMNS, TYPES)
    d.table(BASELINE, rows(), COLUMNS, TYPES)
    return d


def ctx(templates: list[dict[str, Any]] | None = None) -> GateContext:
    base = make_ctx("canary", REL, canary_tables={LOGICAL: CANARY}, baseline_tables={LOGICAL: BASELINE})
    if templates is None:
        return base
    spec = base.stage_ctx.spec.model_copy(
        update={"analysis_templates": [AnalysisTemplate.model_validate(t) for t in templates]}
    )
    return GateContext(
        release=REL,
        stage="canary",
        stage_ctx=StageContext("canary", spec, "prod"),
        now=NOW,
        canary_tables=base.canary_tables,
        baseline_tables=base.baseline_tables,
    )


def gate(**fields: Any) -> CanaryComparisonGate:
    return CanaryComparisonGate.model_validate({"name": "latency", "type": "canaryComparison", **fields})


# every latency spread around the same mean: totals equal, the distribution is not
def spread(k: int, m: int) -> float:
    return 100.0 + 10 * k + (m % 3) + (40.0 if m % 2 else -40.0)


DECLARED = {
    "keys": ["service", "endpoint"],
    "window": {"column": "minute", "length": "1m"},
    "metrics": [
        {"column": "requests", "statistic": "relativeTotal", "threshold": 0.01},
        {"column": "latency_ms", "statistic": "kolmogorovSmirnov", "threshold": 0.01, "minSamples": 20},
    ],
}


def test_iceberg_tables_are_read_in_the_catalog_that_can() -> None:
    # format: iceberg tables: Presto's hive catalog (the stage's) cannot read them; every query of
    # the comparison, the information_schema read included, goes to the iceberg catalog
    d = FakeData()
    d.table(CANARY, rows(), COLUMNS, TYPES, catalog="iceberg")
    d.table(BASELINE, rows(), COLUMNS, TYPES, catalog="iceberg")
    c = dataclasses.replace(ctx(), catalogs={CANARY: "iceberg", BASELINE: "iceberg"})
    v = evaluate(gate(), c, d)
    assert v.verdict is Verdict.PASS, v.message
    assert d.queries and all('"iceberg".' in q for q in d.queries)
    # without the mapping the same tables are unreadable: the gate does not pass
    d.queries.clear()
    assert evaluate(gate(), ctx(), d).verdict is not Verdict.PASS


def test_inferred_columns_of_another_shape() -> None:
    v = evaluate(gate(), ctx(), world(rows()))
    assert v.verdict is Verdict.PASS, v.message
    ev = v.evidence["tables"][0]
    assert ev["columns"]["keys"] == ["service", "endpoint"]
    assert ev["columns"]["window"] == {"column": "minute", "seconds": 60.0}
    assert [(m["column"], m["statistic"]) for m in ev["metrics"]] == [
        ("requests", "relativeTotal"),
        ("latency_ms", "relativeTotal"),
    ]
    assert ev["columns"]["origin"] == dict.fromkeys(("keys", "window", "metrics"), "inferred")
    assert ev["windows"]["count"] == 28  # all but the canary's first and the newest (open) one


def test_declared_distribution_statistic_catches_what_totals_miss() -> None:
    assert evaluate(gate(**DECLARED), ctx(), world(rows())).verdict is Verdict.PASS
    v = evaluate(gate(**DECLARED), ctx(), world(rows(spread)))
    assert v.verdict is Verdict.FAIL, v.message
    ev = v.evidence["tables"][0]
    requests, latency = ev["metrics"]
    assert requests["verdict"] == "pass" and requests["value"] == 0.0
    assert latency["verdict"] == "fail" and latency["statistic"] == "kolmogorovSmirnov"
    assert latency["samples"] == {"canary": 28 * 6, "baseline": 28 * 6}
    assert latency["value"] < 0.01 and latency["threshold"] == 0.01
    assert "latency_ms kolmogorovSmirnov p=" in v.message
    # totals alone (the inferred default) do not see it
    assert evaluate(gate(), ctx(), world(rows(spread))).verdict is Verdict.PASS


def test_too_few_samples_is_inconclusive() -> None:
    fields = dict(
        DECLARED, metrics=[{"column": "latency_ms", "statistic": "mannWhitneyU", "minSamples": 500}]
    )
    v = evaluate(gate(**fields), ctx(), world(rows()))
    assert v.verdict is Verdict.INCONCLUSIVE
    assert "fewer than 500 values on a side" in v.message


TEMPLATE = {
    "name": "latency-shape",
    "args": [{"name": "metric"}, {"name": "maxShift", "value": 0.1}],
    "keys": ["service", "endpoint"],
    "window": {"column": "minute"},
    "metrics": [
        {
            "column": "{{args.metric}}",
            "statistic": "quantileShift",
            "quantile": 0.95,
            "threshold": "{{ args.maxShift }}",
        }
    ],
}


def test_template_from_the_stage_environment() -> None:
    g = gate(template={"name": "latency-shape", "args": {"metric": "latency_ms"}})
    assert evaluate(g, ctx([TEMPLATE]), world(rows())).verdict is Verdict.PASS
    v = evaluate(g, ctx([TEMPLATE]), world(rows(lambda k, m: (100.0 + 10 * k) * 1.5)))
    assert v.verdict is Verdict.FAIL, v.message
    assert v.evidence["template"] == {"name": "latency-shape", "args": {"metric": "latency_ms"}}
    (m,) = v.evidence["tables"][0]["metrics"]
    assert m["statistic"] == "quantileShift" and m["threshold"] == 0.1 and m["quantile"] == 0.95


def test_unknown_template_or_argument_fails() -> None:
    v = evaluate(gate(template={"name": "nope"}), ctx([TEMPLATE]), world(rows()))
    assert v.verdict is Verdict.FAIL
    assert v.message == "template: unknown analysis template 'nope' (known: latency-shape)"
    v = evaluate(gate(template={"name": "latency-shape"}), ctx([TEMPLATE]), world(rows()))
    assert v.message == "template: missing argument 'metric' of analysis template 'latency-shape'"


def test_two_timestamp_columns_need_a_declared_window() -> None:
    d = FakeData()
    cols, types = (*COLUMNS, "ingested_at"), (*TYPES, "timestamp")
    d.table(CANARY, [(*r, r[2]) for r in rows()], cols, types)
    d.table(BASELINE, [(*r, r[2]) for r in rows()], cols, types)
    v = evaluate(gate(), ctx(), d)
    assert v.verdict is Verdict.FAIL
    assert "expected one timestamp column in both tables, found ingested_at, minute" in v.message
    assert evaluate(gate(window={"column": "minute"}), ctx(), d).verdict is Verdict.PASS


def test_environment_parses_templates() -> None:
    env = Environment.model_validate(
        {
            "apiVersion": "pipectl.dev/v1alpha1",
            "kind": "Environment",
            "metadata": {"name": "prod"},
            "spec": {
                **ctx().stage_ctx.spec.model_dump(by_alias=True, exclude_none=True),
                "analysisTemplates": [TEMPLATE],
            },
        }
    )
    assert env.spec.analysis_templates[0].name == "latency-shape"
