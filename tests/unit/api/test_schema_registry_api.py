"""The Confluent Schema Registry REST API under /schema-registry: answers, content type, Confluent
error codes, registration and other writes refused (git is the writer), principals only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.api.schema_registry import (
    JOB_TOKEN_PREFIX,
    MEDIA_TYPE,
    READ_ONLY,
    job_token_matches,
    new_job_token,
)
from controller.model.manifest import Compatibility, SchemaFormat
from controller.rollout import schema_registry as sr
from controller.source.schema_history import CommitSchemas, DeclaredSchema
from tests.unit.api.apikit import World, auth

SR = "/schema-registry"
V1 = json.dumps({"type": "record", "name": "E", "fields": [{"name": "host", "type": "string"}]})
V2 = json.dumps(
    {"type": "record", "name": "E",
     "fields": [{"name": "host", "type": "string"}, {"name": "dc", "type": "string", "default": ""}]}
)
BAD = json.dumps(
    {"type": "record", "name": "E", "fields": [{"name": "host", "type": "string"}, {"name": "dc", "type": "string"}]}
)
JSON_SCHEMA = json.dumps({"type": "object", "properties": {"k": {"type": "string"}}})


def decl(subject: str, text: str, fmt: SchemaFormat = SchemaFormat.AVRO) -> DeclaredSchema:
    return DeclaredSchema(subject, "host-metrics", "e", fmt, Compatibility.BACKWARD, text)


REGISTRY = sr.build(
    [
        CommitSchemas("c1", (decl("t.events-value", V1),)),
        CommitSchemas("c2", (decl("t.events-value", V2), decl("t.keys-key", JSON_SCHEMA, SchemaFormat.JSON))),
    ]
)


@pytest.fixture
def world(repo: Path, tmp_path: Path) -> Iterator[World]:
    w = World(repo, tmp_path)
    w.state.schema_registry = lambda: REGISTRY
    yield w
    w.client.close()


def get(world: World, path: str) -> object:
    r = world.client.get(SR + path, headers=auth(world.bob))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(MEDIA_TYPE)
    return r.json()


def test_reads(world: World) -> None:
    assert get(world, "/subjects") == ["t.events-value", "t.keys-key"]
    assert get(world, "/subjects/t.events-value/versions") == [1, 2]
    assert get(world, "/subjects/t.events-value/versions/latest") == {
        "subject": "t.events-value", "version": 2, "id": 2, "schema": V2
    }
    assert get(world, "/subjects/t.keys-key/versions/1") == {
        "subject": "t.keys-key", "version": 1, "id": 3, "schema": JSON_SCHEMA, "schemaType": "JSON"
    }
    raw = world.client.get(SR + "/subjects/t.events-value/versions/1/schema", headers=auth(world.bob))
    assert raw.text == V1
    assert get(world, "/schemas/ids/1") == {"schema": V1}
    assert get(world, "/schemas/ids/2/versions") == [{"subject": "t.events-value", "version": 2}]
    assert get(world, "/schemas/ids/3/subjects") == ["t.keys-key"]
    assert get(world, "/schemas/types") == ["AVRO", "JSON"]
    assert get(world, "/config") == {"compatibilityLevel": "BACKWARD"}
    assert get(world, "/config/t.events-value") == {"compatibilityLevel": "BACKWARD"}
    assert get(world, "/mode") == {"mode": "READONLY"}


def post(world: World, path: str, body: object) -> tuple[int, dict[str, object]]:
    r = world.client.post(
        SR + path, content=json.dumps(body), headers={**auth(world.bob), "Content-Type": MEDIA_TYPE}
    )
    assert r.headers["content-type"].startswith(MEDIA_TYPE)
    return r.status_code, r.json()


def test_lookup_and_compatibility(world: World) -> None:
    assert post(world, "/subjects/t.events-value", {"schema": V1}) == (
        200, {"subject": "t.events-value", "version": 1, "id": 1, "schema": V1}
    )
    assert post(world, "/subjects/t.events-value", {"schema": BAD})[1]["error_code"] == 40403
    assert post(world, "/compatibility/subjects/t.events-value/versions/latest", {"schema": V2}) == (
        200, {"is_compatible": True}
    )
    status, body = post(world, "/compatibility/subjects/t.events-value/versions/1?verbose=true", {"schema": BAD})
    assert status == 200 and body["is_compatible"] is False
    assert "version 1" in str(body["messages"]) and "dc" in str(body["messages"])
    # against the latest (V2 has dc): BAD reads it; a retyped field does not
    assert post(world, "/compatibility/subjects/t.events-value/versions", {"schema": BAD})[1] == {
        "is_compatible": True
    }
    retyped = V2.replace('"host", "type": "string"', '"host", "type": "int"')
    assert post(world, "/compatibility/subjects/t.events-value/versions", {"schema": retyped})[1] == {
        "is_compatible": False
    }
    status, body = post(world, "/compatibility/subjects/t.events-value/versions/1", {"schema": "{oops"})
    assert (status, body["error_code"]) == (422, 42201)
    status, body = post(world, "/subjects/t.events-value", {"nope": 1})
    assert (status, body["error_code"]) == (422, 42201)


def test_registration_and_other_writes_are_refused(world: World) -> None:
    status, body = post(world, "/subjects/t.events-value/versions", {"schema": V2})
    assert status == 405 and body["error_code"] == 405 and body["message"] == READ_ONLY
    assert "git is the writer" in str(body["message"])
    writes = [("PUT", "/config"), ("PUT", "/config/t.events-value"), ("PUT", "/mode"),
              ("DELETE", "/subjects/t.events-value"), ("DELETE", "/subjects/t.events-value/versions/1")]
    for method, path in writes:
        r = world.client.request(method, SR + path, headers=auth(world.bob), json={"compatibility": "NONE"})
        assert r.status_code == 405 and r.json()["message"] == READ_ONLY, (method, path)
    assert get(world, "/subjects/t.events-value/versions") == [1, 2]  # nothing changed
    assert world.client.get(SR + "/schemas/guids/x", headers=auth(world.bob)).status_code == 404  # not served


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/subjects/nope/versions", 404, 40401),
        ("/subjects/t.events-value/versions/7", 404, 40402),
        ("/subjects/t.events-value/versions/x", 422, 42202),
        ("/schemas/ids/99", 404, 40403),
        ("/schemas/ids/-1", 404, 40403),
        ("/schemas/ids/99999999999999999999", 404, 40403),
        ("/config/nope", 404, 40401),
    ],
)
def test_errors_carry_confluent_codes(world: World, path: str, status: int, code: int) -> None:
    r = world.client.get(SR + path, headers=auth(world.bob))
    assert (r.status_code, r.json()["error_code"]) == (status, code)
    assert r.json()["message"]


def test_principals_only_and_a_controller_needed(world: World) -> None:
    r = world.client.get(SR + "/subjects")
    assert r.status_code == 401 and r.json()["error_code"] == 40101
    assert world.client.post(SR + "/subjects/t.events-value/versions", json={"schema": V1}).status_code == 401
    world.state.schema_registry = None
    r = world.client.get(SR + "/subjects", headers=auth(world.bob))
    assert r.status_code == 501 and r.json()["error_code"] == 50101


def test_not_in_openapi(world: World) -> None:
    paths = world.client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith(SR)]


def test_the_controllers_job_token_reads_the_registry_and_nothing_else(world: World) -> None:
    token = new_job_token()
    world.state.registry_token = token
    r = world.client.get(SR + "/subjects/t.events-value/versions", headers=auth(token))
    assert r.status_code == 200 and r.json() == [1, 2]
    assert world.client.get(SR + "/subjects", headers=auth(token[:-1] + "x")).status_code == 401
    # not a principal: every other route refuses it
    assert world.client.get("/api/v1/releases", headers=auth(token)).status_code == 401
    approve = {"stage": "dev", "version": "1.0.0"}
    assert world.client.post("/api/v1/releases/host-metrics/approve", json=approve,
                             headers=auth(token)).status_code == 401
    world.state.registry_token = None  # an API server that handed out no token accepts none
    assert world.client.get(SR + "/subjects", headers=auth(token)).status_code == 401


def test_job_token_matches() -> None:
    token = new_job_token()
    assert token.startswith(JOB_TOKEN_PREFIX) and token != new_job_token()
    assert job_token_matches(token, token)
    assert not job_token_matches(None, token)
    assert not job_token_matches(token, None)
    assert not job_token_matches("pct_" + token[4:], "pct_" + token[4:])  # a user token's prefix
