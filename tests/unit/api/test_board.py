"""The board's API: the static page (open, with a CSP), the server-sent event stream (a principal,
the releases list at once and again on a change), the audit records and the lineage graph."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from controller.api import board
from controller.api.server import ApiState, create_app
from controller.audit.chain import row_hash
from tests.unit.api.apikit import World, auth


@pytest.fixture
def world(repo: Path, tmp_path: Path) -> Iterator[World]:
    w = World(repo, tmp_path)
    yield w
    w.client.close()


def _client_with_board(state: ApiState, board_dir: Path) -> TestClient:
    app: FastAPI = create_app(state)
    app.router.routes = [r for r in app.router.routes if getattr(r, "path", "") not in ("/", "/assets")]
    board._static(app, board_dir)
    return TestClient(app)


def test_the_page_is_served_without_a_token_and_data_needs_one(world: World, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>pipectl board</title>")
    (dist / "assets" / "app.js").write_text("console.log(1)")
    client = _client_with_board(world.state, dist)
    page = client.get("/")
    assert page.status_code == 200 and "pipectl board" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert client.get("/assets/app.js").text == "console.log(1)"
    assert client.get("/api/v1/stream").status_code == 401
    assert client.get("/api/v1/releases/host-metrics/audit").status_code == 401
    assert client.get("/api/v1/releases/host-metrics/lineage?stage=dev").status_code == 401


def test_an_unbuilt_board_says_how_to_build_it(world: World, tmp_path: Path) -> None:
    client = _client_with_board(world.state, tmp_path / "missing")
    r = client.get("/")
    assert r.status_code == 404 and r.json()["reason"] == "NotBuilt" and "make install" in r.json()["error"]


def _events(chunks: Iterator[str], n: int) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    buf = ""
    for chunk in chunks:
        buf += chunk
        while "\n\n" in buf:
            block, buf = buf.split("\n\n", 1)
            fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
            if "event" in fields:
                out.append((fields["event"], json.loads(fields["data"])))
            if len(out) >= n:
                return out
    return out


def test_the_stream_sends_the_releases_at_once_and_on_a_change(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(board, "POLL_SECONDS", 0.05)
    changed = {"version": "1.1.0", "phase": "Progressing", "stages": {"dev": {"phase": "Progressing"}}}
    with world.client.stream("GET", "/api/v1/stream", headers=auth(world.bob)) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        chunks = r.iter_text()
        (kind, first), = _events(chunks, 1)
        assert kind == "releases" and first["items"] == [
            {"name": "host-metrics", "status": {"version": "1.0.0", "phase": "Succeeded", "stages": {}}}
        ]
        world.store.put_status("host-metrics", changed)
        (kind, second), = _events(chunks, 1)
        assert kind == "releases" and second["items"][0]["status"] == changed


def _append(world: World, rec: dict[str, Any]) -> None:
    world.store.audit_append(rec["record_id"], datetime.now(UTC), "host-metrics", rec["kind"], json.dumps(rec),
                             row_hash)


RECORDS: list[dict[str, Any]] = [
    {"record_id": "a1", "kind": "apply", "stage": "dev", "version": "1.0.0", "actor": "pipectl-controller",
     "actions": ["Topic/dev.t/create: done", "StreamingJob/dev-r-agg-v1-0-0/create: done",
                 "Table/dev_db.agg__v1_0_0/create: done", "View/dev_db.agg/create: done",
                 "Transform/dev_db.daily/create: done", "Dag/daily__dev/create: done"],
     "lineage": {"inputs": ["kafka:dev.t", "hive:dev_db.agg"],
                 "outputs": ["hive:dev_db.agg__v1_0_0", "hive:dev_db.agg", "hive:dev_db.daily"],
                 "columns": {"hive:dev_db.daily.n": ["hive:dev_db.agg.n"]}}},
    {"record_id": "a2", "kind": "apply", "stage": "dev", "version": "1.1.0", "actor": "pipectl-controller",
     "actions": ["StreamingJob/dev-r-agg-v1-1-0/create: done", "Table/dev_db.agg__v1_1_0/create: done",
                 "StreamingJob/dev-r-agg-v1-0-0/delete: done", "View/dev_db.agg/replace: done"],
     "lineage": {"inputs": ["kafka:dev.t"], "outputs": ["hive:dev_db.agg__v1_1_0", "hive:dev_db.agg"],
                 "columns": {}}},
]


def test_audit_records_are_listed_oldest_first(world: World) -> None:
    for rec in RECORDS:
        _append(world, rec)
    body = world.client.get("/api/v1/releases/host-metrics/audit", headers=auth(world.bob)).json()
    assert [r["record"]["record_id"] for r in body["records"]] == ["a1", "a2"]
    assert [r["seq"] for r in body["records"]] == [1, 2] and body["records"][0]["kind"] == "apply"
    r = world.client.get("/api/v1/releases/nope/audit", headers=auth(world.bob))
    assert r.status_code == 404 and r.json()["reason"] == "ReleaseNotFound"


def test_lineage_endpoint_draws_the_newest_version_of_the_stage(world: World) -> None:
    for rec in RECORDS:
        _append(world, rec)
    g = world.client.get("/api/v1/releases/host-metrics/lineage?stage=dev", headers=auth(world.bob)).json()
    assert g["version"] == "1.1.0"
    # what 1.0.0 created and 1.1.0 kept (topic, transform, DAG) is there; 1.0.0's job and table are not
    assert {n["id"] for n in g["nodes"]} == {
        "topic:dev.t", "job:dev-r-agg-v1-1-0", "table:dev_db.agg__v1_1_0", "view:dev_db.agg",
        "transform:dev_db.daily", "dag:daily__dev"}
    assert {(e["from"], e["to"]) for e in g["edges"]} == {
        ("topic:dev.t", "job:dev-r-agg-v1-1-0"), ("job:dev-r-agg-v1-1-0", "table:dev_db.agg__v1_1_0"),
        ("table:dev_db.agg__v1_1_0", "view:dev_db.agg"), ("view:dev_db.agg", "transform:dev_db.daily"),
        ("transform:dev_db.daily", "dag:daily__dev")}
    r = world.client.get("/api/v1/releases/host-metrics/lineage", headers=auth(world.bob))
    assert r.status_code == 400


def test_the_board_reads_are_documented_and_the_endless_stream_is_not(world: World) -> None:
    paths = world.client.get("/openapi.json").json()["paths"]
    assert "/api/v1/releases/{name}/audit" in paths and "/api/v1/releases/{name}/lineage" in paths
    assert "/api/v1/stream" not in paths and "/" not in paths


def test_an_idle_stream_keeps_alive_and_a_revoked_token_ends_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(board, "POLL_SECONDS", 0.05)
    monkeypatch.setattr(board, "KEEPALIVE_SECONDS", 0.1)
    monkeypatch.setattr(board, "RECHECK_SECONDS", 0.2)
    token_id, token = world.tokens.create("dave")
    with world.client.stream("GET", "/api/v1/stream", headers=auth(token)) as r:
        chunks = r.iter_text()
        (kind, _), = _events(chunks, 1)
        assert kind == "releases"
        seen = ""
        while ": keep-alive" not in seen:  # nothing changed: a comment line, no event
            seen += next(chunks)
        assert "event:" not in seen
        assert world.tokens.revoke(token_id)
        rest = list(_events(chunks, 5))  # the stream ends after one last event
    assert rest == [("unauthorized", {"error": "the token is no longer valid"})]
