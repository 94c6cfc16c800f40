"""canaryComparison on a table of another shape than the example, on the real stack.

Request-latency aggregates keyed by service and endpoint, windowed by ``minute``, with the metrics
``requests`` and ``latency_ms`` (and a ``dt`` partition), are created through the Spark Thrift
Server; the gate reads them through PrestoDB with the engine's Presto adapter (``PrestoClient``).
A canary equal to the baseline passes; a canary whose latencies spread ±40 ms around the
baseline's (every total equal) passes the totals and fails the Kolmogorov-Smirnov statistic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from gatekit import PrestoData

from controller.adapters.presto import PrestoClient
from controller.model.manifest import CanaryComparisonGate, Environment, PipelineRelease
from controller.model.reasons import Verdict
from controller.plan.desired import stage_context
from controller.rollout.gates import GateContext, evaluate

pytestmark = pytest.mark.integration

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
LOGICAL = "web.requests_1m"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
KEYS = [(s, e) for s in ("checkout", "search") for e in ("/a", "/b", "/c")]
CLOSED = 18  # the canary's 20 windows but its first (partial) and its newest (open)


def latency(k: int, m: int, spread: bool) -> float:
    base = 80.0 + 15 * k + (m % 3) * 2.5
    return base + ((40.0 if m % 2 else -40.0) if spread else 0.0)


def create(cur: Any, name: str, start: datetime, minutes: int, spread: bool = False) -> None:
    cur.execute(
        f"CREATE TABLE {name} (service STRING, endpoint STRING, `minute` TIMESTAMP, requests BIGINT, "
        "latency_ms DOUBLE) PARTITIONED BY (dt STRING) STORED AS PARQUET"
    )
    values = ", ".join(
        f"('{s}', '{e}', TIMESTAMP '{start + timedelta(minutes=m):%Y-%m-%d %H:%M:%S}', {200 + 10 * k}, "
        f"{latency(k, (start + timedelta(minutes=m)).minute, spread)})"
        for m in range(minutes)
        for k, (s, e) in enumerate(KEYS)
    )
    cur.execute(f"INSERT INTO {name} PARTITION (dt='{NOW:%Y-%m-%d}') VALUES {values}")


@pytest.fixture
def db(hive_conn: Callable[..., Any], unique_name: str) -> Iterator[str]:
    """Baseline (1.0.0, 40 minutes), an equal canary (1.1.0) and a spread one (1.1.1), 20 minutes each."""
    name = f"it_canary_generic_{unique_name}"
    cur = hive_conn().cursor()
    cur.execute(f"CREATE DATABASE {name}")
    try:
        create(cur, f"{name}.requests_1m__v1_0_0", NOW - timedelta(minutes=40), 40)
        create(cur, f"{name}.requests_1m__v1_1_0", NOW - timedelta(minutes=20), 20)
        create(cur, f"{name}.requests_1m__v1_1_1", NOW - timedelta(minutes=20), 20, spread=True)
        yield name
    finally:
        cur.execute(f"DROP DATABASE IF EXISTS {name} CASCADE")


@pytest.fixture
def presto(stack: dict[str, Any]) -> Iterator[PrestoData]:
    client = PrestoClient(stack["presto_host"], int(stack["presto_port"]))
    yield PrestoData(client)
    client.close()


def context(db: str, canary: str) -> GateContext:
    release = PipelineRelease.model_validate(
        yaml.safe_load((MANIFESTS / "releases" / "host-metrics.yaml").read_text())
    )
    envs = {}
    for p in (MANIFESTS / "environments").glob("*.yaml"):
        env = Environment.model_validate(yaml.safe_load(p.read_text()))
        envs[env.name] = env
    return GateContext(
        release=release,
        stage="canary",
        stage_ctx=stage_context("canary", envs),
        now=NOW,
        canary_tables={LOGICAL: f"{db}.{canary}"},
        baseline_tables={LOGICAL: f"{db}.requests_1m__v1_0_0"},
    )


INFERRED = CanaryComparisonGate(name="matches-baseline", type="canaryComparison")
DECLARED = CanaryComparisonGate.model_validate(
    {
        "name": "latency-shape",
        "type": "canaryComparison",
        "keys": ["service", "endpoint"],
        "window": {"column": "minute", "length": "1m"},
        "metrics": [
            {"column": "requests", "statistic": "relativeTotal", "threshold": 0.01},
            {"column": "latency_ms", "statistic": "kolmogorovSmirnov", "threshold": 0.01, "minSamples": 30},
        ],
    }
)


def metrics(v: Any) -> dict[str, dict[str, Any]]:
    return {m["column"]: m for m in v.evidence["tables"][0]["metrics"]}


def test_equal_canary_passes_declared_and_inferred(db: str, presto: PrestoData) -> None:
    ctx = context(db, "requests_1m__v1_1_0")
    v = evaluate(DECLARED, ctx, presto)
    assert v.verdict is Verdict.PASS, v.message
    ev = v.evidence["tables"][0]
    assert ev["windows"]["count"] == CLOSED
    m = metrics(v)
    assert m["requests"]["value"] == 0.0
    assert m["latency_ms"]["samples"] == {"canary": CLOSED * len(KEYS), "baseline": CLOSED * len(KEYS)}
    assert m["latency_ms"]["d"] == 0.0
    # nothing declared: the live columns decide (the dt partition column is no key)
    v = evaluate(INFERRED, ctx, presto)
    assert v.verdict is Verdict.PASS, v.message
    cols = v.evidence["tables"][0]["columns"]
    assert cols["keys"] == ["service", "endpoint"]
    assert cols["window"] == {"column": "minute", "seconds": 60.0}
    assert [x["column"] for x in cols["metrics"]] == ["requests", "latency_ms"]


def test_latency_shift_with_equal_totals_fails_the_distribution_statistic(
    db: str, presto: PrestoData
) -> None:
    ctx = context(db, "requests_1m__v1_1_1")
    v = evaluate(DECLARED, ctx, presto)
    assert v.verdict is Verdict.FAIL, v.message
    m = metrics(v)
    assert m["requests"]["verdict"] == "pass" and m["requests"]["value"] == 0.0
    latency_ms = m["latency_ms"]
    assert latency_ms["verdict"] == "fail" and latency_ms["statistic"] == "kolmogorovSmirnov"
    assert latency_ms["value"] < 0.01 and latency_ms["d"] >= 0.2
    assert "latency_ms kolmogorovSmirnov p=" in v.message
    # totals alone do not see it: the latencies' sum is the baseline's
    v = evaluate(INFERRED, ctx, presto)
    assert v.verdict is Verdict.PASS, v.message
    assert metrics(v)["latency_ms"]["value"] == pytest.approx(0.0, abs=1e-12)
