"""``controller.jobkit.wire.fetch_writer_schemas`` against pipectl's own registry API (its routes
answered by the API app in process; only the job's HTTP GET is routed to it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from controller.jobkit import wire
from controller.model.manifest import Compatibility, SchemaFormat
from controller.rollout import schema_registry as sr
from controller.source.schema_history import CommitSchemas, DeclaredSchema
from tests.unit.api.apikit import World

V1 = json.dumps({"type": "record", "name": "E", "fields": [{"name": "host", "type": "string"}]})
V2 = json.dumps(
    {"type": "record", "name": "E",
     "fields": [{"name": "dc", "type": "string", "default": ""}, {"name": "host", "type": "string"}]}
)
OTHER = json.dumps({"type": "record", "name": "O", "fields": [{"name": "k", "type": "long"}]})


def decl(subject: str, text: str) -> DeclaredSchema:
    return DeclaredSchema(subject, "r", "e", SchemaFormat.AVRO, Compatibility.BACKWARD, text)


REGISTRY = sr.build([
    CommitSchemas("c1", (decl("o.other-value", OTHER),)),
    CommitSchemas("c2", (decl("o.other-value", OTHER), decl("t.events-value", V1))),
    CommitSchemas("c3", (decl("o.other-value", OTHER), decl("t.events-value", V2))),
])


@pytest.fixture
def world(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    w = World(repo, tmp_path)
    w.state.schema_registry = lambda: REGISTRY
    seen: list[str | None] = []

    def get(url: str, token: str | None, timeout: float) -> object:
        seen.append(token)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = w.client.get(urlsplit(url).path, headers=headers)
        r.raise_for_status()
        return r.json()

    monkeypatch.setattr(wire, "_get", get)
    w.seen = seen  # type: ignore[attr-defined]
    yield w
    w.client.close()


def test_every_version_of_the_subject_by_id(world: World) -> None:
    got = wire.fetch_writer_schemas("http://ctl:8088/schema-registry", "t.events-value", world.bob)
    # ids are the fold's: OTHER first seen at c1 (1), V1 at c2 (2), V2 at c3 (3); OTHER is not this subject's
    assert {k: json.loads(v) for k, v in got.items()} == {2: json.loads(V1), 3: json.loads(V2)}
    assert set(world.seen) == {world.bob}  # type: ignore[attr-defined]


def test_unknown_subject_and_no_token_fail(world: World) -> None:
    with pytest.raises(Exception, match="404"):
        wire.fetch_writer_schemas("http://ctl:8088/schema-registry", "nope-value", world.bob)
    with pytest.raises(Exception, match="401"):
        wire.fetch_writer_schemas("http://ctl:8088/schema-registry", "t.events-value", None)


def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="http"):
        wire.fetch_writer_schemas("file:///etc/passwd", "t.events-value")


def test_a_job_reads_with_the_controllers_job_token(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a controller-started job does: ``--schema-registry``/``--subject`` from its arguments,
    the token from the variable the runner sets (the name the controller side uses too)."""
    from controller.api.schema_registry import new_job_token
    from controller.jobkit.kafka_job import base_parser, check_args, writer_schemas
    from controller.model.endpoints import REGISTRY_TOKEN_ENV

    assert REGISTRY_TOKEN_ENV == wire.TOKEN_ENV
    token = new_job_token()
    world.state.registry_token = token
    monkeypatch.setenv(wire.TOKEN_ENV, token)
    args = check_args(base_parser("j", "", Path("s.avsc")).parse_args([
        "--bootstrap-servers", "k:9092", "--topic", "dev.t.events", "--table", "d.t", "--checkpoint", "/c",
        "--query-name", "dev-r-j", "--version", "1.0.0",
        "--schema-registry", "http://ctl:8088/schema-registry", "--subject", "t.events-value",
    ]))
    assert sorted(writer_schemas(args) or {}) == [2, 3]
    assert world.seen == [token, token, token]  # type: ignore[attr-defined]
