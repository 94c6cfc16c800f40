"""The producer/consumer order a schema change needs, as plan notes and on the consumers' actions:
golden cases per compatibility level (BACKWARD consumers first, FORWARD producers first, FULL
either, NONE no safe order)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from controller.cli.render import render_plan
from controller.model.manifest import Compatibility, PipelineRelease
from controller.plan.actions import Action, Op, Plan
from controller.plan.resources import ResourceKind
from controller.rollout.schema_order import annotate, earlier_texts, schema_changes
from controller.source.validate import load_repo

AVSC = "schemas/host_metric_event.avsc"


def release(repo: Path, level: Compatibility) -> PipelineRelease:
    rel = load_repo(repo).release("host-metrics")
    schemas = [s.model_copy(update={"compatibility": level}) for s in rel.spec.schemas]
    return rel.model_copy(update={"spec": rel.spec.model_copy(update={"schemas": schemas})})


def texts(repo: Path) -> tuple[str, str]:
    v1 = (repo / AVSC).read_text()
    doc = json.loads(v1)
    doc["fields"].append({"name": "dc", "type": "string", "default": ""})
    return v1, json.dumps(doc)


def plan_of(*actions: Action) -> Plan:
    return Plan(release="host-metrics", version="1.1.0", stage="dev", generated_at=datetime(2026, 1, 1, tzinfo=UTC),
                actions=list(actions))


JOB = Action(op=Op.CREATE, kind=ResourceKind.STREAMING_JOB, name="dev-host-metrics-host-metrics-agg-v1-1-0",
             reason="new version")
TOPIC = Action(op=Op.UPDATE, kind=ResourceKind.TOPIC, name="dev.telemetry.host_metrics", reason="config drift")
PHYSICAL = {"host-metrics-agg": JOB.name}

GOLDEN = {
    Compatibility.BACKWARD: (
        "consumers-first (host-metric-event BACKWARD)",
        "schema host-metric-event changes under BACKWARD: consumers first — this plan deploys the consumers "
        "of telemetry.host_metrics (host-metrics-agg); producers may write the new version only once the "
        "consumers run it at every stage they read",
    ),
    Compatibility.FORWARD_TRANSITIVE: (
        "producers-first (host-metric-event FORWARD_TRANSITIVE)",
        "schema host-metric-event changes under FORWARD_TRANSITIVE: producers first — every producer of "
        "telemetry.host_metrics must write the new version before this plan's consumers (host-metrics-agg) "
        "are updated",
    ),
    Compatibility.FULL: (
        "any (host-metric-event FULL)",
        "schema host-metric-event changes under FULL: producers and consumers of telemetry.host_metrics in "
        "either order",
    ),
    Compatibility.NONE: (
        "any (host-metric-event NONE)",
        "schema host-metric-event changes under NONE: no order is safe (not checked) — use a new topic, or "
        "stop the producers of telemetry.host_metrics",
    ),
}


@pytest.mark.parametrize("level", list(GOLDEN))
def test_golden_order_per_level(repo: Path, level: Compatibility) -> None:
    v1, v2 = texts(repo)
    rel = release(repo, level)
    changes = schema_changes(rel, {"host-metric-event": v2}, {"host-metric-event": v1})
    assert [(c.schema, c.topics, c.consumers) for c in changes] == [
        ("host-metric-event", ("telemetry.host_metrics",), ("host-metrics-agg",))
    ]
    out = annotate(plan_of(TOPIC, JOB), changes, PHYSICAL)
    order, note = GOLDEN[level]
    assert out.notes == [note]
    assert [a.reason for a in out.actions] == ["config drift", f"new version; schema order: {order}"]
    assert [a.id for a in out.actions] == [TOPIC.id, JOB.id]  # nothing reordered, nothing dropped


def test_no_change_no_note(repo: Path) -> None:
    v1, v2 = texts(repo)
    rel = release(repo, Compatibility.BACKWARD)
    respaced = json.dumps(json.loads(v1), indent=8)
    assert schema_changes(rel, {"host-metric-event": respaced}, {"host-metric-event": v1}) == []
    assert schema_changes(rel, {"host-metric-event": v2}, {}) == []  # the first version is not a change
    plan = plan_of(JOB)
    assert annotate(plan, [], PHYSICAL) is plan


def test_earlier_texts_is_the_newest_earlier_promoted_version() -> None:
    history = {"s": {"1.0.0": "a", "1.2.0": "c", "1.10.0": "d", "1.1.0": "b"}, "t": {"2.0.0": "x"}}
    assert earlier_texts(history, "1.3.0") == {"s": "c"}
    assert earlier_texts(history, "1.11.0") == {"s": "d"}  # semver order, not text order
    assert earlier_texts(history, "1.0.0") == {}


def test_the_plan_shows_the_notes(repo: Path) -> None:
    v1, v2 = texts(repo)
    changes = schema_changes(release(repo, Compatibility.BACKWARD), {"host-metric-event": v2},
                             {"host-metric-event": v1})
    buf = io.StringIO()
    render_plan(annotate(plan_of(JOB), changes, PHYSICAL), Console(file=buf, width=400))
    text = buf.getvalue()
    assert "Note: schema host-metric-event changes under BACKWARD: consumers first" in text
    assert "schema order: consumers-first (host-metric-event BACKWARD)" in text
    assert Plan.model_validate_json(annotate(plan_of(JOB), changes, PHYSICAL).model_dump_json()).notes
