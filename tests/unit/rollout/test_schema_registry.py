"""The registry fold (git history → subjects, versions, ids) and its queries, on golden cases."""

from __future__ import annotations

import json

import pytest

from controller.model.manifest import Compatibility, SchemaFormat
from controller.rollout import schema_registry as sr
from controller.source.schema_history import CommitSchemas, DeclaredSchema

V1 = json.dumps(
    {"type": "record", "name": "E", "fields": [{"name": "host", "type": "string"}]}
)
V2 = json.dumps(
    {
        "type": "record",
        "name": "E",
        "fields": [{"name": "host", "type": "string"}, {"name": "dc", "type": "string", "default": ""}],
    }
)
NO_DEFAULT = json.dumps(
    {"type": "record", "name": "E", "fields": [{"name": "host", "type": "string"}, {"name": "dc", "type": "string"}]}
)
OTHER = json.dumps({"type": "record", "name": "K", "fields": [{"name": "k", "type": "string"}]})


def decl(subject: str, text: str, compat: Compatibility = Compatibility.BACKWARD) -> DeclaredSchema:
    return DeclaredSchema(subject, "rel", "s", SchemaFormat.AVRO, compat, text)


def step(commit: str, *schemas: DeclaredSchema) -> CommitSchemas:
    return CommitSchemas(commit, tuple(schemas))


HISTORY = [
    step("c1", decl("t.events-value", V1)),
    step("c2", decl("t.events-value", V1), decl("t.keys-key", OTHER)),  # unchanged, one new subject
    step("c3", decl("t.events-value", V2), decl("t.keys-key", OTHER), decl("t.copy-value", V1)),
    step("c4", decl("t.events-value", V1, Compatibility.FULL)),  # a revert, and a new level
]


def test_fold_assigns_ids_and_versions_in_history_order() -> None:
    reg = sr.build(HISTORY)
    assert reg.head == "c4"
    assert [(e.id, e.text) for e in reg.schemas] == [(1, V1), (2, OTHER), (3, V2)]
    events = reg.subjects["t.events-value"]
    assert [(v.version, v.id, v.commit) for v in events.versions] == [
        (1, 1, "c1"),
        (2, 3, "c3"),
        (3, 1, "c4"),  # the revert is a new version with the old id: latest is what git says now
    ]
    assert events.compatibility is Compatibility.FULL
    assert [(v.version, v.id) for v in reg.subjects["t.copy-value"].versions] == [(1, 1)]  # same content, same id
    assert [(v.version, v.id) for v in reg.subjects["t.keys-key"].versions] == [(1, 2)]


def test_fold_in_steps_equals_fold_at_once() -> None:
    first = sr.build(HISTORY[:2])
    assert sr.build(HISTORY[2:], first) == sr.build(HISTORY)
    assert first.head == "c2" and len(first.schemas) == 2  # the start is not changed


def test_whitespace_and_key_order_do_not_make_a_new_id() -> None:
    respaced = json.dumps(json.loads(V1), indent=4, sort_keys=True)
    reg = sr.build([step("a", decl("x-value", V1)), step("b", decl("x-value", respaced))])
    assert len(reg.schemas) == 1
    assert [v.version for v in reg.subjects["x-value"].versions] == [1]


def test_queries() -> None:
    reg = sr.build(HISTORY)
    assert sr.version(reg, "t.events-value", "latest").version == 3
    assert sr.version(reg, "t.events-value", "-1").id == 1
    assert sr.version(reg, "t.events-value", "2").id == 3
    assert sr.id_versions(reg, 1) == [("t.copy-value", 1), ("t.events-value", 1), ("t.events-value", 3)]
    assert sr.lookup(reg, "t.events-value", SchemaFormat.AVRO, V2).version == 2
    assert sr.lookup(reg, "t.events-value", SchemaFormat.AVRO, V1).version == 3  # the newest carrying it
    assert sr.compatibility_level(reg, None) is Compatibility.BACKWARD
    assert sr.compatibility_level(reg, "t.events-value") is Compatibility.FULL


@pytest.mark.parametrize(
    ("call", "status", "code"),
    [
        (lambda r: sr.subject(r, "nope"), 404, 40401),
        (lambda r: sr.version(r, "t.events-value", "9"), 404, 40402),
        (lambda r: sr.version(r, "t.events-value", "0"), 422, 42202),
        (lambda r: sr.version(r, "t.events-value", "abc"), 422, 42202),
        (lambda r: sr.schema(r, 0), 404, 40403),
        (lambda r: sr.schema(r, 4), 404, 40403),
        (lambda r: sr.lookup(r, "t.events-value", SchemaFormat.AVRO, OTHER), 404, 40403),
        (lambda r: sr.schema_format("PROTOBUF"), 422, 42201),
        (lambda r: sr.incompatibilities(r, "t.keys-key", None, SchemaFormat.AVRO, "{not json"), 422, 42201),
    ],
)
def test_errors_carry_confluent_codes(call: object, status: int, code: int) -> None:
    reg = sr.build(HISTORY)
    with pytest.raises(sr.RegistryError) as e:
        call(reg)  # type: ignore[operator]
    assert (e.value.status, e.value.code) == (status, code)


def test_compatibility_uses_the_subjects_level() -> None:
    reg = sr.build(HISTORY[:3])  # t.events-value: BACKWARD, versions V1, V2
    assert sr.incompatibilities(reg, "t.events-value", "latest", SchemaFormat.AVRO, V2) == []
    found = sr.incompatibilities(reg, "t.events-value", "1", SchemaFormat.AVRO, NO_DEFAULT)
    assert len(found) == 1
    assert found[0].startswith("not backward compatible with version 1 (reader_field_missing_default_value")
    assert "dc" in found[0]
    other = sr.incompatibilities(reg, "t.events-value", None, SchemaFormat.JSON, "{}")
    assert other == ["schemaType JSON differs from the subject's AVRO"]


def test_registry_survives_json() -> None:
    reg = sr.build(HISTORY)
    assert sr.Registry.model_validate_json(reg.model_dump_json()) == reg
