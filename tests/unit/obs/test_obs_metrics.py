"""Metrics helpers: the names and labels the alert rules use, one release_info series per stage."""

from __future__ import annotations

import subprocess
import sys
import time

from controller.obs import metrics
from controller.obs.metrics import REGISTRY


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def release_info_series(release: str) -> list[dict[str, str]]:
    out = []
    for family in REGISTRY.collect():
        if family.name == "pipectl_release_info":
            out += [s.labels for s in family.samples if s.labels["release"] == release]
    return out


def test_release_info_keeps_one_series_per_release_and_stage() -> None:
    metrics.set_release_info("rinfo", "dev", "1.0.0", "Progressing")
    metrics.set_release_info("rinfo", "dev", "1.0.0", "Verifying")
    metrics.set_release_info("rinfo", "dev", "1.1.0", "Progressing")
    metrics.set_release_info("rinfo", "prod", "0.9.0", "Succeeded")

    series = sorted(release_info_series("rinfo"), key=lambda s: s["stage"])
    assert series == [
        {"release": "rinfo", "stage": "dev", "version": "1.1.0", "phase": "Progressing"},
        {"release": "rinfo", "stage": "prod", "version": "0.9.0", "phase": "Succeeded"},
    ]
    assert (
        value("pipectl_release_info", release="rinfo", stage="dev", version="1.1.0", phase="Progressing") == 1
    )


def test_release_info_without_version_uses_empty_label() -> None:
    metrics.set_release_info("rnover", "dev", None, "Pending")
    assert release_info_series("rnover") == [
        {"release": "rnover", "stage": "dev", "version": "", "phase": "Pending"}
    ]


def test_forget_release_drops_all_its_series() -> None:
    metrics.set_release_info("gone", "dev", "1", "Succeeded")
    metrics.observe_reconcile("gone", "success", 0.2)
    metrics.record_rollback("gone", "dev")
    metrics.set_streaming_lag("gone", "dev", "agg", 3.0)
    metrics.forget_release("gone")

    text = metrics.render().decode()
    assert 'release="gone"' not in text


def test_observe_reconcile_records_duration_and_heartbeat() -> None:
    before = time.time()
    metrics.observe_reconcile("hb", "success", 0.3)
    metrics.observe_reconcile("hb", "error", 12.0)

    assert value("pipectl_reconcile_duration_seconds_count", release="hb", result="success") == 1
    assert value("pipectl_reconcile_duration_seconds_bucket", release="hb", result="error", le="30.0") == 1
    assert value("pipectl_reconcile_duration_seconds_bucket", release="hb", result="error", le="10.0") == 0
    heartbeat = value("pipectl_last_reconcile_timestamp_seconds", release="hb")
    assert heartbeat is not None and heartbeat >= before


def test_counters_and_gauges_carry_the_documented_labels() -> None:
    metrics.record_action("kafka_topic", "done")
    metrics.record_reconcile_error("cnt", "ApplyFailed")
    metrics.record_gate_result("row-count", "fail")
    metrics.record_rollback("cnt", "prod")
    metrics.set_drift("cnt", "prod", 2)
    metrics.set_event_freshness("cnt", "prod", "agg", 95.0)
    metrics.set_backend_up(metrics.STATE_BACKEND, False)
    metrics.set_leader("pod-a", True)
    metrics.set_audit_chain_ok(True)

    assert value("pipectl_actions_total", kind="kafka_topic", result="done") is not None
    assert value("pipectl_reconcile_errors_total", release="cnt", reason="ApplyFailed") == 1
    assert value("pipectl_gate_results_total", gate="row-count", verdict="fail") is not None
    assert value("pipectl_rollbacks_total", release="cnt", stage="prod") == 1
    assert value("pipectl_drift_resources", release="cnt", stage="prod") == 2
    assert value("pipectl_event_freshness_seconds", release="cnt", stage="prod", streaming_job="agg") == 95
    assert value("pipectl_backend_up", backend="state") == 0
    assert value("pipectl_leader", instance="pod-a") == 1
    assert value("pipectl_audit_chain_ok") == 1


def test_init_release_creates_counters_at_zero() -> None:
    metrics.init_release("fresh", ["dev", "prod"])
    assert value("pipectl_rollbacks_total", release="fresh", stage="prod") == 0


def test_exposed_names_cover_the_issue_contract() -> None:
    names = metrics.exposed_names()
    for name, labels in {
        "pipectl_reconcile_duration_seconds_bucket": {"release", "result", "le"},
        "pipectl_actions_total": {"kind", "result"},
        "pipectl_drift_resources": {"release", "stage"},
        "pipectl_gate_results_total": {"gate", "verdict"},
        "pipectl_rollbacks_total": {"release", "stage"},
        "pipectl_release_info": {"release", "stage", "version", "phase"},
        "pipectl_reconcile_errors_total": {"release", "reason"},
        "pipectl_streaming_lag_seconds": {"release", "stage", "streaming_job"},
        "pipectl_event_freshness_seconds": {"release", "stage", "streaming_job"},
        "pipectl_backend_up": {"backend"},
        "pipectl_audit_chain_ok": set(),
        "pipectl_leader": {"instance"},
        "pipectl_last_reconcile_timestamp_seconds": {"release"},
    }.items():
        assert names[name] == labels, name


def test_audit_chain_gauge_is_unknown_until_verified() -> None:
    # A fresh gauge would read 0, i.e. "broken", before anything was verified: it starts as NaN.
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from controller.obs.metrics import REGISTRY as R; print(R.get_sample_value('pipectl_audit_chain_ok'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "nan"
    metrics.set_audit_chain_ok(False)
    assert value("pipectl_audit_chain_ok") == 0


def test_render_is_prometheus_text() -> None:
    metrics.set_backend_up("kafka", True)
    text = metrics.render().decode()
    assert "# TYPE pipectl_backend_up gauge" in text
    assert 'pipectl_backend_up{backend="kafka"} 1.0' in text
    assert metrics.CONTENT_TYPE_LATEST.startswith("text/plain")


def test_losing_leadership_clears_what_only_the_leader_knows() -> None:
    metrics.set_release_info("lead", "prod", "2.0.0", "Progressing")
    metrics.set_drift("lead", "prod", 1)
    metrics.set_event_freshness("lead", "prod", "agg", 30.0)
    metrics.observe_reconcile("lead", "success", 1.0)
    metrics.set_backend_up("kafka", True)
    metrics.record_rollback("lead", "prod")

    metrics.clear_leader_series()

    text = metrics.render().decode()
    for name in ("pipectl_release_info{", "pipectl_drift_resources{", "pipectl_event_freshness_seconds{"):
        assert name not in text
    assert value("pipectl_last_reconcile_timestamp_seconds", release="lead") is None
    assert value("pipectl_backend_up", backend="kafka") is None
    assert value("pipectl_rollbacks_total", release="lead", stage="prod") == 1  # counters stay
    # a new phase after regaining leadership is still the only series for the stage
    metrics.set_release_info("lead", "prod", "2.0.0", "Succeeded")
    assert release_info_series("lead") == [
        {"release": "lead", "stage": "prod", "version": "2.0.0", "phase": "Succeeded"}
    ]
