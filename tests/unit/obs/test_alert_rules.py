"""Alert rules and dashboard: valid for promtool, unit-tested by promtool, and written against
metrics and labels that controller/obs/metrics.py really exports, with runbooks that exist.

promtool comes from the Debian package ``prometheus`` (``apt-get install -y --no-install-recommends
prometheus``); the promtool tests skip, saying so, when it is not on PATH.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.obs.metrics import exposed_names

ROOT = Path(__file__).resolve().parents[3]
MONITORING = ROOT / "manifests" / "platform" / "monitoring"
RULES = MONITORING / "pipectl-alerts.yaml"
RULE_TESTS = MONITORING / "pipectl-alerts.test.yaml"
DASHBOARD = MONITORING / "grafana-pipectl.json"
RUNBOOKS = ROOT / "docs" / "runbooks.md"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not on PATH (apt-get install -y --no-install-recommends prometheus)",
)

# Set by Prometheus on every scraped series, not by the controller.
TARGET_LABELS = {"job", "instance", "exported_instance"}
METRIC = re.compile(r"\b(pipectl_[a-z0-9_]+|pipectl:[a-z0-9_:]+)")
MATCHERS = re.compile(r"(pipectl[a-z0-9_:]+|\bup)\s*\{([^}]*)\}")
MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
TEMPLATE_LABEL = re.compile(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)")


@functools.cache
def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [r for r in rules() if "alert" in r]


def recorded_labels() -> dict[str, set[str]]:
    """Labels each recording rule's series carries (its grouping, inherited down the chain)."""
    out: dict[str, set[str]] = {}
    for r in rules():
        if "record" in r:
            grouping = GROUPING.search(r["expr"])
            if grouping:
                out[r["record"]] = {x.strip() for x in grouping.group(1).split(",") if x.strip()}
            else:
                (source,) = [m for m in METRIC.findall(r["expr"]) if m in out]
                out[r["record"]] = out[source]
    return out


@functools.cache
def known_series() -> dict[str, set[str]]:
    return {**exposed_names(), **recorded_labels(), "up": set()}


def check_expr(expr: str, where: str) -> set[str]:
    """Assert every series and label ``expr`` uses exists; return the labels it can carry."""
    series = known_series()
    used = set(METRIC.findall(expr)) | ({"up"} if re.search(r"\bup\s*\{", expr) else set())
    unknown = used - set(series)
    assert not unknown, (
        f"{where}: unknown metrics {sorted(unknown)} (define them in controller/obs/metrics.py)"
    )
    labels = TARGET_LABELS.union(*(series[m] for m in used)) if used else set(TARGET_LABELS)
    for name, body in MATCHERS.findall(expr):
        for label in MATCHER_LABEL.findall(body):
            assert label in series[name] | TARGET_LABELS, f"{where}: {name} has no label {label!r}"
    for group in GROUPING.findall(expr):
        for label in (x.strip() for x in group.split(",")):
            if label:
                assert label in labels, f"{where}: grouping by unknown label {label!r}"
    return labels


def github_anchors(markdown: str) -> set[str]:
    anchors = set()
    for line in markdown.splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            anchors.add(slug)
    anchors |= set(re.findall(r'<a (?:id|name)="([^"]+)"', markdown))
    return anchors


# --- promtool ------------------------------------------------------------------------------


@needs_promtool
def test_promtool_check_rules() -> None:
    assert PROMTOOL is not None
    out = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


@needs_promtool
def test_promtool_test_rules() -> None:
    assert PROMTOOL is not None
    out = subprocess.run(
        [PROMTOOL, "test", "rules", RULE_TESTS.name], capture_output=True, text=True, cwd=MONITORING
    )
    assert out.returncode == 0, out.stdout + out.stderr


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool only checks PromQL inside rule files: wrap each panel query in a recording rule.
    exprs = [
        t["expr"].replace("$__rate_interval", "5m").replace("$release", ".*").replace("$stage", ".*")
        for t in dashboard_targets()
    ]
    doc = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert PROMTOOL is not None
    out = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


# --- the rules, in Python ------------------------------------------------------------------

REQUIRED_ALERTS = {
    "PipectlReconcileFailing",  # reconcile failures
    "PipectlReleaseStuck",  # Progressing/Verifying > 30m
    "PipectlGateFailed",
    "PipectlRollback",
    "PipectlDrift",
    "PipectlFreshnessSLOBurnFast",  # multi-window burn rate
    "PipectlFreshnessSLOBurnSlow",
    "PipectlStreamingLagHigh",
    "PipectlControllerDown",  # up == 0 / absent
    "PipectlReconcileLoopStalled",  # stale heartbeat
    "PipectlStateStoreUnavailable",
    "PipectlBackendUnavailable",
    "PipectlAuditChainBroken",
}


def test_every_required_alert_is_defined() -> None:
    names = [a["alert"] for a in alerts()]
    assert len(names) == len(set(names)), "duplicate alert names"
    assert REQUIRED_ALERTS <= set(names), sorted(REQUIRED_ALERTS - set(names))


def test_every_metric_the_rules_use_exists_in_the_metrics_module() -> None:
    for r in rules():
        labels = check_expr(r["expr"], r.get("alert") or r["record"])
        if "alert" in r:
            templated = set(TEMPLATE_LABEL.findall(json.dumps(r.get("annotations", {}))))
            assert templated <= labels, f"{r['alert']}: annotations use unknown labels {templated - labels}"


def test_every_alert_has_severity_summary_description_and_a_runbook_that_exists() -> None:
    anchors = github_anchors(RUNBOOKS.read_text())
    for a in alerts():
        name = a["alert"]
        assert a.get("labels", {}).get("severity") in {"critical", "warning"}, name
        ann = a.get("annotations", {})
        assert ann.get("summary") and ann.get("description"), name
        url = ann.get("runbook_url", "")
        m = re.fullmatch(r"docs/runbooks\.md#([a-z0-9-]+)", url)
        assert m, f"{name}: runbook_url {url!r} is not docs/runbooks.md#<anchor>"
        assert m.group(1) in anchors, f"{name}: docs/runbooks.md has no section #{m.group(1)}"


def test_rule_unit_tests_cover_rollback_stuck_phase_and_controller_down() -> None:
    doc = yaml.safe_load(RULE_TESTS.read_text())
    firing = {
        case["alertname"]
        for test in doc["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {"PipectlRollback", "PipectlReleaseStuck", "PipectlControllerDown"} <= firing
    assert doc["rule_files"] == [RULES.name]


# --- the dashboard -------------------------------------------------------------------------


def dashboard_targets() -> list[dict[str, Any]]:
    dash = json.loads(DASHBOARD.read_text())
    return [t for p in dash["panels"] for t in p.get("targets", [])]


def test_dashboard_is_valid_and_uses_only_known_metrics() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("phase", "latency p95", "actions", "errors", "gate", "rollbacks", "lag", "freshness"):
        assert topic in titles, topic
    for t in dashboard_targets():
        check_expr(t["expr"], f"dashboard query {t['expr']!r}")


@pytest.mark.parametrize(
    "expr",
    [
        "pipectl_reconcile_failures_total > 0",  # no such metric
        'pipectl_rollbacks_total{phase="x"} > 0',  # no such label on the metric
        "max by (job_name) (pipectl_streaming_lag_seconds) > 1",  # grouping by a label nobody has
    ],
)
def test_the_checker_catches_mistakes(expr: str) -> None:
    with pytest.raises(AssertionError):
        check_expr(expr, "probe")
