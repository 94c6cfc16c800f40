"""Gates against the real local stack: dataQuality and canaryComparison through Presto.

Tables with known rows are created through the Spark Thrift Server (Hive DDL, Parquet, the
``dt`` partition layout of ``host_metrics_1m``) in a database of the test's own, and read back by
the gates through a real ``GateData`` that sends their SQL to PrestoDB with pyhive. No job
progress is involved: with no writer job mapped, the canary comparison closes windows from the
tables' own data (the newest window of each table counts as open).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from gatekit import NoJobsGateData
from pyhive import exc as pyhive_exc

from controller.model.errors import PermanentBackendError, TransientBackendError
from controller.model.manifest import CanaryComparisonGate, DataQualityGate, Environment, PipelineRelease
from controller.model.reasons import Verdict
from controller.plan.desired import stage_context
from controller.rollout.gates import GateContext, evaluate

pytestmark = pytest.mark.integration

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
LOGICAL = "telemetry.host_metrics_1m"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
BASELINE_START = NOW - timedelta(minutes=40)
CANARY_START = NOW - timedelta(minutes=20)
HOSTS, METRICS, SAMPLES = 4, ("cpu", "mem"), 100


class PrestoGateData(NoJobsGateData):
    """A real ``GateData``: queries go to PrestoDB; this test deploys no jobs, schemas or approvals."""

    def __init__(self, connect: Callable[..., Any]):
        self.connect = connect
        self.queries: list[str] = []

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        self.queries.append(sql)
        try:
            cur = self.connect().cursor()
            cur.execute(sql)
            return [tuple(r) for r in cur.fetchall()]
        except requests.exceptions.ConnectionError as e:
            raise TransientBackendError("presto", str(e)) from e
        except pyhive_exc.DatabaseError as e:
            raise PermanentBackendError("presto", str(e)) from e


def rows(
    start: datetime, minutes: int, samples: int = SAMPLES
) -> list[tuple[str, str, datetime, int, float]]:
    out = []
    for m in range(minutes):
        ws = start + timedelta(minutes=m)
        for h in range(HOSTS):
            for i, metric in enumerate(METRICS):
                out.append((f"host-{h}", metric, ws, samples, 40.0 + h * 5 + i * 11 + (ws.minute % 7) * 0.5))
    return out


def create_table(cursor: Any, name: str, data: list[tuple[str, str, datetime, int, float]]) -> None:
    cursor.execute(
        f"CREATE TABLE {name} (host STRING, metric STRING, window_start TIMESTAMP, samples BIGINT, "
        "avg_value DOUBLE, max_value DOUBLE) PARTITIONED BY (dt STRING) STORED AS PARQUET"
    )
    values = ", ".join(
        f"('{h}', '{m}', TIMESTAMP '{ws:%Y-%m-%d %H:%M:%S}', {n}, {v}, {v * 2})" for h, m, ws, n, v in data
    )
    cursor.execute(f"INSERT INTO {name} PARTITION (dt='{NOW:%Y-%m-%d}') VALUES {values}")


@pytest.fixture
def db(hive_conn: Callable[..., Any], unique_name: str) -> Iterator[str]:
    """A database holding the baseline (1.0.0), a good canary (1.1.0) and a defective one (1.1.1)."""
    name = f"it_gates_{unique_name}"
    cur = hive_conn().cursor()
    cur.execute(f"CREATE DATABASE {name}")
    try:
        create_table(cur, f"{name}.host_metrics_1m__v1_0_0", rows(BASELINE_START, 40))
        create_table(cur, f"{name}.host_metrics_1m__v1_1_0", rows(CANARY_START, 20))
        # the defect of the demo's 1.1.0: 5% of the events dropped
        create_table(cur, f"{name}.host_metrics_1m__v1_1_1", rows(CANARY_START, 20, samples=95))
        yield name
    finally:
        cur.execute(f"DROP DATABASE IF EXISTS {name} CASCADE")


def context(stage: str, **kw: Any) -> GateContext:
    doc = yaml.safe_load((MANIFESTS / "releases" / "host-metrics.yaml").read_text())
    release = PipelineRelease.model_validate(doc)
    envs = {}
    for p in (MANIFESTS / "environments").glob("*.yaml"):
        env = Environment.model_validate(yaml.safe_load(p.read_text()))
        envs[env.name] = env
    return GateContext(release=release, stage=stage, stage_ctx=stage_context(stage, envs), now=NOW, **kw)


# --- dataQuality ----------------------------------------------------------------------------


def quality(query: str, expect: str) -> DataQualityGate:
    return DataQualityGate(name="aggregates-present", type="dataQuality", query=query, expect=expect)


def test_data_quality_verdicts_through_presto(db: str, presto_conn: Callable[..., Any]) -> None:
    data = PrestoGateData(presto_conn)
    good = context("staging", tables={LOGICAL: f"{db}.host_metrics_1m__v1_1_0"})
    bad = context("staging", tables={LOGICAL: f"{db}.host_metrics_1m__v1_1_1"})

    v = evaluate(quality(f"SELECT count(*) FROM {LOGICAL}", "> 0"), good, data)
    assert v.verdict is Verdict.PASS, v.message
    assert v.evidence["value"] == 20 * HOSTS * len(METRICS)
    assert v.evidence["sql"] == f'SELECT COUNT(*) FROM "{db}"."host_metrics_1m__v1_1_0" AS host_metrics_1m'
    assert data.queries[-1] == v.evidence["sql"]

    short = quality(f"SELECT count(*) FROM {LOGICAL} WHERE host_metrics_1m.samples < {SAMPLES}", "== 0")
    assert evaluate(short, good, data).verdict is Verdict.PASS
    v = evaluate(short, bad, data)
    assert v.verdict is Verdict.FAIL
    assert v.message == f"{20 * HOSTS * len(METRICS)} does not satisfy '== 0'"

    nulls = quality(f"SELECT count_if(avg_value IS NULL) * 1.0 / count(*) FROM {LOGICAL}", "<= 0.01")
    assert evaluate(nulls, good, data).verdict is Verdict.PASS

    empty = quality(f"SELECT max(samples) FROM {LOGICAL} WHERE dt = '1999-01-01'", "> 0")
    assert evaluate(empty, good, data).verdict is Verdict.INCONCLUSIVE  # NULL


def test_data_quality_presto_error_fails(db: str, presto_conn: Callable[..., Any]) -> None:
    data = PrestoGateData(presto_conn)
    missing = context("staging", tables={LOGICAL: f"{db}.no_such_table"})
    v = evaluate(quality(f"SELECT count(*) FROM {LOGICAL}", "> 0"), missing, data)
    assert v.verdict is Verdict.FAIL
    assert "query failed" in v.message and "no_such_table" in v.message


# --- canaryComparison -----------------------------------------------------------------------

CANARY = CanaryComparisonGate(name="matches-baseline", type="canaryComparison", tolerance=0.02, alpha=0.01)


def canary_context(db: str, canary_table: str) -> GateContext:
    return context(
        "canary",
        canary_tables={LOGICAL: f"{db}.{canary_table}"},
        baseline_tables={LOGICAL: f"{db}.host_metrics_1m__v1_0_0"},
    )


def test_canary_matching_the_baseline_passes(db: str, presto_conn: Callable[..., Any]) -> None:
    v = evaluate(CANARY, canary_context(db, "host_metrics_1m__v1_1_0"), PrestoGateData(presto_conn))
    assert v.verdict is Verdict.PASS, v.message
    (ev,) = v.evidence["tables"]
    # windows from the canary's second (first complete) up to, not including, the newest (open)
    assert ev["windows"]["count"] == 18
    assert ev["windows"]["first"] == (CANARY_START + timedelta(minutes=1)).isoformat()
    samples, avg = ev["metrics"]  # the example table's default profile
    assert samples["canary_total"] == samples["baseline_total"] == 18 * HOSTS * len(METRICS) * SAMPLES
    assert samples["statistic"] == "relativeTotal" and samples["value"] == 0.0
    assert avg["statistic"] == "mannWhitneyU" and avg["p_value"] == pytest.approx(1.0)


def test_canary_dropping_five_percent_fails(db: str, presto_conn: Callable[..., Any]) -> None:
    v = evaluate(CANARY, canary_context(db, "host_metrics_1m__v1_1_1"), PrestoGateData(presto_conn))
    assert v.verdict is Verdict.FAIL
    ev = v.evidence["tables"][0]
    assert ev["metrics"][0]["value"] == pytest.approx(-0.05)
    assert "-5.00%" in v.message


def test_canary_soak_counts_closed_windows(db: str, presto_conn: Callable[..., Any]) -> None:
    patient = CANARY.model_copy(update={"min_closed_windows": 30})
    v = evaluate(patient, canary_context(db, "host_metrics_1m__v1_1_0"), PrestoGateData(presto_conn))
    assert v.verdict is Verdict.INCONCLUSIVE
    assert "soaking, 18 of 30 closed windows" in v.message
