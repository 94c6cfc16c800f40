"""The stack's Prometheus server for real: it is ready, has loaded the repo's alert rules and
evaluates them without error, scrapes a running controller found through file-based discovery
(``controller.devstack.prometheus.register_target``), and a canaryComparison gate with a
``prometheus`` provider passes or fails on a real query through ``PrometheusClient``."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from controller.adapters.prometheus import PrometheusClient
from controller.devstack.layout import Layout, port
from controller.devstack.prometheus import ALERT_RULES, register_target, write_token
from controller.engine.gating import StageGateData
from controller.model.manifest import CanaryComparisonGate, Environment, PipelineRelease
from controller.model.reasons import Verdict
from controller.plan.desired import stage_context
from controller.rollout.canary import evaluate_canary
from controller.rollout.context import GateContext
from tests.integration.ctlkit import ROOT, Ctl, free_port, init_repo, stage_env_yaml, token_for, wait_for


def _url(stack: dict[str, Any]) -> str:
    # a stack started before the prometheus component existed has no prometheus_url yet
    return str(stack.get("prometheus_url") or f"http://127.0.0.1:{port('prometheus')}")


def test_server_is_ready_and_evaluates_the_alert_rules(stack: dict[str, Any]) -> None:
    client = PrometheusClient(_url(stack))
    assert client._session.get(f"{client.url}/-/ready", timeout=5).status_code == 200
    groups = client._session.get(f"{client.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
    declared = yaml.safe_load((ROOT / ALERT_RULES).read_text())["groups"]
    assert [g["name"] for g in groups] == [g["name"] for g in declared]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == sum(len(g["rules"]) for g in declared)
    assert {r["health"] for r in rules} <= {"ok", "unknown"}  # unknown: not evaluated yet


def _gate_ctx(baseline_version: str) -> GateContext:
    rel = PipelineRelease.model_validate(yaml.safe_load((ROOT / "manifests/releases/host-metrics.yaml").read_text()))
    envs = {}
    for p in sorted((ROOT / "manifests/environments").glob("*.yaml")):
        env = Environment.model_validate(yaml.safe_load(p.read_text()))
        envs[env.name] = env
    return GateContext(release=rel, stage="canary", stage_ctx=stage_context("canary", envs),
                       now=datetime.now(UTC), baseline_version=baseline_version)  # fmt: skip


def test_scrapes_a_controller_and_a_prometheus_provider_judges_a_gate(
    tmp_path: Path, stack: dict[str, Any], unique_name: str
) -> None:
    uid = unique_name
    client = PrometheusClient(_url(stack))
    repo = init_repo(tmp_path, {"environments/dev.yaml": stage_env_yaml("dev", f"it{uid}.", f"it{uid}_",
                                                                        stack["airflow_dags_folder"])}, "env")
    state = tmp_path / "state.db"
    layout = Layout(ROOT)
    write_token(layout, token_for(state, "prometheus"))  # /metrics wants an API token
    ctl = Ctl(repo, state, free_port(), tmp_path / "controller.log")
    files: list[Path] = []
    ctl.start()
    try:
        live = f"127.0.0.1:{ctl.port}"
        # two targets on the live controller ("versions" 1.0.0 and 0.9.0), one on a closed port (0.8.0)
        for version, address in (("1.0.0", live), ("0.9.0", live), ("0.8.0", f"127.0.0.1:{free_port()}")):
            files.append(register_target(layout, "pipectl", f"it-{uid}-{version}", address,
                                         {"pipectl_test": uid, "side": version}))  # fmt: skip
        t0 = time.monotonic()
        wait_for(lambda: sorted(v for _l, v in client.query(f'up{{pipectl_test="{uid}"}}')) == [0, 1, 1],
                 60, "3 targets scraped (2 up, 1 down)", ctl.log)
        names = {labels["__name__"] for labels, _v in client.query(
            f'count by (__name__) ({{__name__=~"pipectl_.+", pipectl_test="{uid}", side="1.0.0"}})')}
        assert {"pipectl_leader", "pipectl_backend_up"} <= names  # both used by alert rules
        print(f"targets discovered and scraped in {time.monotonic() - t0:.1f}s")

        data = StageGateData(SimpleNamespace(prometheus=client), store=None, current_version="1.0.0")  # type: ignore[arg-type]
        gate = CanaryComparisonGate.model_validate({
            "name": "targets-up", "type": "canaryComparison", "providers": [{
                "name": "up", "threshold": 0.0,
                "prometheus": {"query": f'sum(up{{pipectl_test="{uid}", side="{{{{version}}}}"}})'},
            }],
        })  # fmt: skip
        same = evaluate_canary(gate, _gate_ctx("0.9.0"), data)  # 1 target up on both sides
        assert same.verdict is Verdict.PASS, same.message
        assert same.evidence["providers"][0]["canary_total"] == 1.0
        down = evaluate_canary(gate, _gate_ctx("0.8.0"), data)  # the baseline's target is down: 0
        assert down.verdict is Verdict.FAIL, down.message
        assert "up 1 vs baseline 0" in down.message
    finally:
        ctl.stop()
        for f in files:
            f.unlink(missing_ok=True)
