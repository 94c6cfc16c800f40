"""``controller.engine.gating.StageGateData`` over a stage's ``StagePorts``: canaryComparison
providers read PromQL through the stage's ``prometheus`` port (none configured: the provider fails,
saying so) and consumer groups' committed offsets through its Kafka port."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any

from controller.adapters.base import CallStats
from controller.engine.gate_request import GateRequest
from controller.engine.gating import Gates, StageGateData
from controller.model.errors import TransientBackendError
from controller.model.manifest import CanaryComparisonGate
from controller.model.reasons import Verdict
from controller.rollout.canary import evaluate_canary
from controller.rollout.gates import default_tables
from controller.store.db import Store
from tests.unit.engine.world import Clock, Installation
from tests.unit.rollout.gate_fakes import NOW, make_ctx


class FakePrometheus:
    """``MetricsPort``: PromQL text → the values of its series."""

    def __init__(self, answers: dict[str, list[float]]):
        self.stats = CallStats()
        self.answers = answers
        self.asked: list[tuple[str, datetime | None]] = []

    def query(self, promql: str, at: datetime | None = None) -> list[tuple[dict[str, str], float]]:
        self.stats.count("query")
        self.asked.append((promql, at))
        return [({"instance": str(i)}, v) for i, v in enumerate(self.answers.get(promql, []))]


def provider_gate(provider: dict[str, Any]) -> CanaryComparisonGate:
    return CanaryComparisonGate.model_validate({"name": "cmp", "type": "canaryComparison", "providers": [provider]})


PROM = {"name": "errors", "prometheus": {"query": "errors{v='{{version}}'}"}}


def test_a_stage_without_prometheus_fails_the_prometheus_provider() -> None:
    ports = Installation.new(Clock())
    assert ports.prometheus is None
    data = StageGateData(ports, store=None, current_version="1.0.0")  # type: ignore[arg-type]
    v = evaluate_canary(provider_gate(PROM), make_ctx("canary", baseline_version="0.9.0"), data)
    assert v.verdict is Verdict.FAIL
    assert "errors: prometheus: the stage's Environment sets no prometheus endpoint" in v.message


def test_prometheus_provider_sums_the_ports_series_at_the_gates_now() -> None:
    ports = Installation.new(Clock())
    ports.prometheus = FakePrometheus({"errors{v='1.0.0'}": [0.5, 0.5], "errors{v='0.9.0'}": [1.0]})
    data = StageGateData(ports, store=None, current_version="1.0.0")  # type: ignore[arg-type]
    v = evaluate_canary(provider_gate(PROM), make_ctx("canary", baseline_version="0.9.0"), data)
    ev = v.evidence["providers"][0]
    assert (ev["canary_total"], ev["baseline_total"], ev["verdict"]) == (1.0, 1.0, "pass")
    assert ports.prometheus.asked == [("errors{v='1.0.0'}", NOW), ("errors{v='0.9.0'}", NOW)]


def test_committed_offsets_are_read_from_the_stages_kafka() -> None:
    ports = Installation.new(Clock())
    ports.kafka.groups = {"agg-1.0.0": {"events": {0: 7, 1: 9}}}
    data = StageGateData(ports, store=None, current_version="1.0.0")  # type: ignore[arg-type]
    assert data.committed_offsets("agg-1.0.0") == {"events": {0: 7, 1: 9}}
    assert data.committed_offsets("nobody") == {}
    assert ports.kafka.stats.calls["list_consumer_group_offsets"] == 2


def test_an_inconclusive_verdict_names_the_backend_it_could_not_reach(tmp_path: Any) -> None:
    """``Gates.evaluate``: the verdict of a gate whose question met an outage carries the backend
    (``evidence.unavailable``); the stage then waits as BackendUnavailable, not GateInconclusive."""
    def refused(sql: str, op: str = "") -> list[Any]:
        raise TransientBackendError("presto", "connection refused")

    ctx = make_ctx("staging")
    req = GateRequest(
        release=ctx.release, stage="staging", ctx=ctx.stage_ctx,
        backends=SimpleNamespace(presto=SimpleNamespace(query=refused)),  # type: ignore[arg-type]
        tables=default_tables(ctx.release, ctx.stage_ctx), jobs={}, baseline_tables={},
        baseline_version=None, schema_texts={}, now=NOW,
        only=frozenset(g.name for g in ctx.release.spec.rollout.gates if g.type == "dataQuality"),
    )
    verdicts = Gates(Store(f"sqlite:///{tmp_path}/state.db")).evaluate(req)
    assert verdicts and all(v.verdict == "inconclusive" for v in verdicts)
    assert all(v.evidence["unavailable"] == ["presto"] for v in verdicts)
