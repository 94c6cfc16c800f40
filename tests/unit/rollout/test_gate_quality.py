"""dataQuality: SQL assertions through (fake) Presto against the stage's own tables."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from gate_fakes import NOW, FakeData, make_ctx, metric_rows

from controller.model.errors import PermanentBackendError, TransientBackendError
from controller.model.manifest import DataQualityGate
from controller.model.reasons import Verdict
from controller.rollout.gates import compare, default_tables, evaluate

LOGICAL = "telemetry.host_metrics_1m"
STAGING = "staging_telemetry.host_metrics_1m__v1_0_0"  # blue/green sinks are per version


def gate(query: str = f"SELECT count(*) FROM {LOGICAL}", expect: str = "> 0") -> DataQualityGate:
    return DataQualityGate(name="aggregates-present", type="dataQuality", query=query, expect=expect)


@pytest.fixture
def data() -> FakeData:
    d = FakeData()
    d.table(STAGING, metric_rows(NOW - timedelta(minutes=10), 5))  # 40 rows
    d.table("prod_telemetry.host_metrics_1m", [])  # must not be read at staging
    d.table("telemetry.host_metrics_1m", [])
    return d


def run(g: DataQualityGate, data: FakeData) -> Any:
    base = make_ctx("staging")
    return evaluate(g, make_ctx("staging", tables=default_tables(base.release, base.stage_ctx)), data)


def test_passes_against_the_stage_table(data: FakeData) -> None:
    v = run(gate(), data)
    assert v.verdict is Verdict.PASS, v.message
    assert v.evidence["sql"] == (
        'SELECT COUNT(*) FROM "staging_telemetry"."host_metrics_1m__v1_0_0" AS host_metrics_1m'
    )
    assert v.evidence["value"] == 40
    assert v.evidence["expect"] == "> 0"
    assert data.queries == [v.evidence["sql"]]


@pytest.mark.parametrize(
    ("query", "expect", "verdict"),
    [
        (f"SELECT count(*) FROM {LOGICAL}", "== 40", Verdict.PASS),
        (f"SELECT count(*) FROM {LOGICAL}", "< 10", Verdict.FAIL),
        (f"SELECT count_if(avg_value IS NULL) * 1.0 / count(*) FROM {LOGICAL}", "<= 0.01", Verdict.PASS),
        (f"SELECT count(*) FROM {LOGICAL} WHERE samples < 0", "== 0", Verdict.PASS),
        (f"SELECT max(samples) FROM {LOGICAL} WHERE samples < 0", "> 0", Verdict.INCONCLUSIVE),  # NULL
        (f"SELECT samples FROM {LOGICAL} WHERE samples < 0", "> 0", Verdict.INCONCLUSIVE),  # no rows
        (f"SELECT samples FROM {LOGICAL}", "> 0", Verdict.FAIL),  # many rows
        (f"SELECT host, samples FROM {LOGICAL} LIMIT 1", "> 0", Verdict.FAIL),  # two columns
        (f"SELECT max(host) FROM {LOGICAL}", "> 0", Verdict.FAIL),  # not a number
        (f"SELECT count(*) > 0 FROM {LOGICAL}", "== 1", Verdict.PASS),  # a boolean counts as 1/0
    ],
)
def test_verdicts(data: FakeData, query: str, expect: str, verdict: Verdict) -> None:
    v = run(gate(query, expect), data)
    assert v.verdict is verdict, v.message


def test_an_iceberg_table_is_queried_in_the_iceberg_catalog() -> None:
    d = FakeData()
    d.table(STAGING, metric_rows(NOW - timedelta(minutes=10), 5), catalog="iceberg")
    base = make_ctx("staging")
    tables = default_tables(base.release, base.stage_ctx)
    v = evaluate(gate(), make_ctx("staging", tables=tables, catalogs={STAGING: "iceberg"}), d)
    assert v.verdict is Verdict.PASS, v.message
    assert v.evidence["sql"] == (
        'SELECT COUNT(*) FROM "iceberg"."staging_telemetry"."host_metrics_1m__v1_0_0" AS host_metrics_1m'
    )


def test_unknown_table_is_refused_without_running(data: FakeData) -> None:
    v = run(gate("SELECT count(*) FROM telemetry.secrets"), data)
    assert v.verdict is Verdict.FAIL
    assert v.message.startswith("query refused: table telemetry.secrets is not one of")
    assert data.queries == []


def test_multiple_statements_are_refused(data: FakeData) -> None:
    v = run(gate(f"SELECT count(*) FROM {LOGICAL}; DROP TABLE {LOGICAL}"), data)
    assert v.verdict is Verdict.FAIL
    assert "exactly one SELECT" in v.message
    assert data.queries == []


def test_canary_stage_reads_its_own_tables() -> None:
    d = FakeData()
    # blue/green sinks are per version and live in prod's namespace; the canary runs 1.0.0 here
    d.table("telemetry.host_metrics_1m__v1_0_0", metric_rows(NOW - timedelta(minutes=5), 1))
    ctx = make_ctx("canary")
    v = evaluate(gate(), make_ctx("canary", tables=default_tables(ctx.release, ctx.stage_ctx)), d)
    assert v.verdict is Verdict.PASS, v.message
    assert '"telemetry"."host_metrics_1m__v1_0_0"' in v.evidence["sql"]


def test_backend_errors(data: FakeData) -> None:
    data.raise_on_query = TransientBackendError("presto", "SERVER_STARTING_UP")
    assert run(gate(), data).verdict is Verdict.INCONCLUSIVE
    data.raise_on_query = PermanentBackendError("presto", "Table does not exist")
    v = run(gate(), data)
    assert v.verdict is Verdict.FAIL
    assert "Table does not exist" in v.message


@pytest.mark.parametrize(("cell", "value"), [(Decimal("0.25"), 0.25), ("3", 3.0), (True, 1.0), (7, 7.0)])
def test_numeric_cells(cell: object, value: float) -> None:
    class One(FakeData):
        def query(self, sql: str) -> list[tuple[Any, ...]]:
            return [(cell,)]

    v = run(gate(expect=f"== {value}"), One())
    assert v.verdict is Verdict.PASS, v.message
    assert v.evidence["value"] == value


@pytest.mark.parametrize(
    ("value", "expect", "ok"),
    [(1, "> 0", True), (0, "> 0", False), (0.01, "<= 0.01", True), (3, "!= 3", False), (-1, ">= -1", True)],
)
def test_compare(value: float, expect: str, ok: bool) -> None:
    assert compare(value, expect) is ok
