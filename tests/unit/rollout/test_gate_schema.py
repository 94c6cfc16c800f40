"""schemaCompatibility: Avro modes (incl. transitive), JSON Schema structural check, ordering."""

from __future__ import annotations

import json
from typing import Any

import pytest
from gate_fakes import FakeData, load_release, make_ctx

from controller.model.manifest import Compatibility, SchemaCompatibilityGate
from controller.model.reasons import Verdict
from controller.rollout.gates import evaluate, ordering

GATE = SchemaCompatibilityGate(name="schema-compatible", type="schemaCompatibility")
SCHEMA = "host-metric-event"

BASE: dict[str, Any] = {
    "type": "record",
    "name": "HostMetricEvent",
    "namespace": "telemetry",
    "fields": [
        {"name": "host", "type": "string"},
        {"name": "metric", "type": "string"},
        {"name": "value", "type": "double"},
    ],
}


def avro(*extra: dict[str, Any], drop: str | None = None, retype: tuple[str, str] | None = None) -> str:
    fields = [dict(f) for f in BASE["fields"] if f["name"] != drop]
    if retype:
        for f in fields:
            if f["name"] == retype[0]:
                f["type"] = retype[1]
    return json.dumps({**BASE, "fields": fields + list(extra)})


WITH_DEFAULT = {"name": "region", "type": "string", "default": "unknown"}
NO_DEFAULT = {"name": "region", "type": "string"}


def run(mode: str, new: str, *previous: str, fmt: str = "avro") -> Any:
    release = load_release(
        schemas=[{"name": SCHEMA, "format": fmt, "path": "schemas/x", "compatibility": mode}]
    )
    data = FakeData(schemas={("host-metrics", SCHEMA): list(previous)})
    return evaluate(GATE, make_ctx("staging", release, schemas={SCHEMA: new}), data)


def test_first_version_passes() -> None:
    v = run("BACKWARD", avro())
    assert v.verdict is Verdict.PASS
    assert "first version" in v.message
    assert v.evidence["schemas"][0]["ordering"] == "consumers-first"


@pytest.mark.parametrize(
    ("mode", "new", "expected"),
    [
        # adding a field with a default: new reads old (default fills in), old ignores it
        ("BACKWARD", avro(WITH_DEFAULT), Verdict.PASS),
        ("FORWARD", avro(WITH_DEFAULT), Verdict.PASS),
        ("FULL", avro(WITH_DEFAULT), Verdict.PASS),
        # adding a field without a default: the new reader cannot read old data
        ("BACKWARD", avro(NO_DEFAULT), Verdict.FAIL),
        ("FORWARD", avro(NO_DEFAULT), Verdict.PASS),
        ("FULL", avro(NO_DEFAULT), Verdict.FAIL),
        # removing a field without a default: old readers need it
        ("BACKWARD", avro(drop="value"), Verdict.PASS),
        ("FORWARD", avro(drop="value"), Verdict.FAIL),
        ("FULL", avro(drop="value"), Verdict.FAIL),
        # a type change breaks both directions; a promotion (int → long) only one
        ("BACKWARD", avro(retype=("value", "string")), Verdict.FAIL),
        ("FORWARD", avro(retype=("value", "string")), Verdict.FAIL),
        ("NONE", avro(retype=("value", "string")), Verdict.PASS),
    ],
)
def test_avro_modes(mode: str, new: str, expected: Verdict) -> None:
    v = run(mode, new, avro())
    assert v.verdict is expected, v.message
    found = v.evidence["schemas"][0].get("incompatibilities", [])
    assert bool(found) == (expected is Verdict.FAIL)


def test_failure_evidence_names_the_incompatibility() -> None:
    v = run("BACKWARD", avro(retype=("value", "string")), avro())
    (inc,) = v.evidence["schemas"][0]["incompatibilities"]
    assert inc["kind"] == "type_mismatch"
    assert inc["direction"] == "backward"
    assert inc["location"] == "/fields/2/type"
    assert "not BACKWARD compatible" in v.message
    assert "string" in v.message and "double" in v.message


def test_transitive_checks_every_earlier_version() -> None:
    v1 = avro()  # value: double
    v2 = avro(drop="value")  # BACKWARD-compatible with v1
    v3 = avro({"name": "value", "type": "string", "default": "x"}, drop="value")  # compatible with v2 only
    assert run("BACKWARD", v3, v2, v1).verdict is Verdict.PASS
    t = run("BACKWARD_TRANSITIVE", v3, v2, v1)
    assert t.verdict is Verdict.FAIL
    assert [i["against"] for i in t.evidence["schemas"][0]["incompatibilities"]] == [1]
    assert run("FORWARD_TRANSITIVE", v3, v2, v1).verdict is Verdict.FAIL
    assert run("FULL_TRANSITIVE", v2, v1).verdict is Verdict.FAIL  # v1 readers need value


def test_promotion_int_to_long_is_backward_only() -> None:
    old = avro(retype=("value", "int"))
    new = avro(retype=("value", "long"))
    assert run("BACKWARD", new, old).verdict is Verdict.PASS
    assert run("FORWARD", new, old).verdict is Verdict.FAIL


def test_unparseable_schema_fails() -> None:
    v = run("BACKWARD", '{"type": "record"}', avro())
    assert v.verdict is Verdict.FAIL
    assert "not a valid Avro schema" in v.message


def test_missing_schema_text_fails() -> None:
    release = load_release()
    v = evaluate(GATE, make_ctx("dev", release), FakeData())
    assert v.verdict is Verdict.FAIL
    assert "not provided" in v.message


def test_release_without_schemas_passes() -> None:
    v = evaluate(GATE, make_ctx("dev", load_release(schemas=[], topics=[])), FakeData())
    assert v.verdict is Verdict.PASS


# --- JSON Schema ----------------------------------------------------------------------------

JBASE: dict[str, Any] = {
    "type": "object",
    "properties": {"host": {"type": "string"}, "value": {"type": "number"}},
    "required": ["host"],
}


def j(**changes: Any) -> str:
    doc = json.loads(json.dumps(JBASE))
    for k, v in changes.items():
        doc[k] = v
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("mode", "new", "expected"),
    [
        ("BACKWARD", j(properties={**JBASE["properties"], "dc": {"type": "string"}}), Verdict.PASS),
        ("BACKWARD", j(required=["host", "value"]), Verdict.FAIL),  # new required property
        ("BACKWARD", j(properties={"host": {"type": "string"}, "value": {"type": "string"}}), Verdict.FAIL),
        ("FORWARD", j(required=[]), Verdict.FAIL),  # old readers require host
        ("BACKWARD", j(required=[]), Verdict.PASS),
        # integer data is a number: narrowing the writer is fine for old readers
        ("FORWARD", j(properties={"host": {"type": "string"}, "value": {"type": "integer"}}), Verdict.PASS),
        ("BACKWARD", j(properties={"host": {"type": "string"}, "value": {"type": "integer"}}), Verdict.FAIL),
    ],
)
def test_json_schema_structural_check(mode: str, new: str, expected: Verdict) -> None:
    v = run(mode, new, json.dumps(JBASE), fmt="json")
    assert v.verdict is expected, v.message


def test_json_additional_properties_false_rejects_new_properties() -> None:
    old = j(additionalProperties=False)
    new = j(properties={**JBASE["properties"], "dc": {"type": "string"}}, additionalProperties=False)
    assert run("FORWARD", new, old, fmt="json").verdict is Verdict.FAIL
    assert run("BACKWARD", new, old, fmt="json").verdict is Verdict.PASS


# --- ordering -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "order"),
    [
        (Compatibility.BACKWARD, "consumers-first"),
        (Compatibility.BACKWARD_TRANSITIVE, "consumers-first"),
        (Compatibility.FORWARD, "producers-first"),
        (Compatibility.FORWARD_TRANSITIVE, "producers-first"),
        (Compatibility.FULL, "any"),
        (Compatibility.FULL_TRANSITIVE, "any"),
        (Compatibility.NONE, "any"),
    ],
)
def test_ordering(mode: Compatibility, order: str) -> None:
    assert ordering(mode) == order
