"""A gate query has an overall deadline (``controller.engine.gating.StageGateData``): a Presto
statement still running past it is cancelled and the gate is inconclusive, not failed, not hung."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from gate_fakes import make_ctx

from controller.adapters import presto as presto_mod
from controller.adapters.presto import PrestoClient
from controller.engine.gating import GATE_QUERY_DEADLINE, StageGateData
from controller.model.errors import TransientBackendError
from controller.model.manifest import DataQualityGate
from controller.model.reasons import Verdict
from controller.rollout.gates import default_tables, evaluate


class StuckCursor:
    def __init__(self) -> None:
        self._requests_kwargs: dict[str, Any] = {"timeout": 60.0}
        self.cancelled = False

    def execute(self, sql: str) -> None:
        pass

    def poll(self) -> dict[str, Any]:
        return {"stats": {"state": "RUNNING"}}

    def cancel(self) -> None:
        self.cancelled = True


def test_gate_query_past_its_deadline_is_inconclusive(monkeypatch: pytest.MonkeyPatch) -> None:
    cursor = StuckCursor()
    monkeypatch.setattr(presto_mod.presto, "connect", lambda **_kw: SimpleNamespace(cursor=lambda: cursor))
    client = PrestoClient("127.0.0.1", timeout=60)
    data = StageGateData(SimpleNamespace(presto=client), store=None, current_version="1.0.0", query_deadline=0.3)  # type: ignore[arg-type]
    gate = DataQualityGate(
        name="rows", type="dataQuality", query="SELECT count(*) FROM telemetry.host_metrics_1m", expect="> 0"
    )
    base = make_ctx("staging")
    t0 = time.monotonic()
    v = evaluate(gate, make_ctx("staging", tables=default_tables(base.release, base.stage_ctx)), data)
    assert time.monotonic() - t0 < 3.0
    assert v.verdict is Verdict.INCONCLUSIVE, v.message
    assert "deadline" in v.message
    assert cursor.cancelled
    assert client.stats.calls["gate"] == 1


def test_default_gate_deadline_is_bounded() -> None:
    assert 0 < GATE_QUERY_DEADLINE <= 600


def test_an_unreachable_presto_is_named_a_slow_one_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """``StageGateData.unavailable``: what the stage's status names when gates wait on an outage."""
    def refused(sql: str, op: str = "") -> list[Any]:
        raise TransientBackendError("presto", "connection refused")

    data = StageGateData(SimpleNamespace(presto=SimpleNamespace(query=refused)), store=None, current_version="1.0.0")  # type: ignore[arg-type]
    gate = DataQualityGate(
        name="rows", type="dataQuality", query="SELECT count(*) FROM telemetry.host_metrics_1m", expect="> 0"
    )
    base = make_ctx("staging")
    v = evaluate(gate, make_ctx("staging", tables=default_tables(base.release, base.stage_ctx)), data)
    assert v.verdict is Verdict.INCONCLUSIVE and "connection refused" in v.message
    assert data.unavailable == {"presto"}

    cursor = StuckCursor()
    monkeypatch.setattr(presto_mod.presto, "connect", lambda **_kw: SimpleNamespace(cursor=lambda: cursor))
    slow = StageGateData(SimpleNamespace(presto=PrestoClient("127.0.0.1", timeout=60)), store=None, current_version="1.0.0", query_deadline=0.3)  # type: ignore[arg-type]
    v = evaluate(gate, make_ctx("staging", tables=default_tables(base.release, base.stage_ctx)), slow)
    assert v.verdict is Verdict.INCONCLUSIVE and "deadline" in v.message
    assert slow.unavailable == set()
