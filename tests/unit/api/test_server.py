"""The HTTP API over a real socket on loopback: reads open, writes need the token, webhook wakes."""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.api.server import ApiServer, ApiState
from controller.store.db import Store

TOKEN = "s3cret-token"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[str, list[Any], Store]]:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    store.put_status("host-metrics", {"version": "1.0.0", "phase": "Succeeded", "stages": {}})
    triggered: list[Any] = []

    def approve(r: str, s: str, who: str) -> dict[str, Any]:
        if r != "host-metrics":
            raise LookupError(f"release {r!r} not found")
        return {"release": r, "stage": s, "approver": who}

    srv = ApiServer(
        "127.0.0.1:0",
        ApiState(store, TOKEN, triggered.append, lambda: {"ok": True}, lambda: b"pipectl_up 1\n", approve),
    )
    srv.start()
    host, port = srv.address
    yield f"http://{host}:{port}", triggered, store
    srv.stop()


def call(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(
        url, data=body, method="POST" if body is not None else "GET", headers=headers or {}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            data = r.read()
            return r.status, (
                json.loads(data)
                if r.headers["Content-Type"].startswith("application/json")
                else data.decode()
            )
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_reads_are_open_on_loopback(api) -> None:  # type: ignore[no-untyped-def]
    base, _, _ = api
    assert call(base + "/healthz") == (200, {"ok": True})
    code, body = call(base + "/api/v1/releases")
    assert code == 200 and body["items"][0]["name"] == "host-metrics"
    code, body = call(base + "/api/v1/releases/host-metrics")
    assert code == 200 and body["status"]["version"] == "1.0.0"
    assert call(base + "/api/v1/releases/nope")[0] == 404
    assert call(base + "/metrics") == (200, "pipectl_up 1\n")


def test_webhook_needs_a_token(api) -> None:  # type: ignore[no-untyped-def]
    base, triggered, _ = api
    assert call(base + "/hooks/git", b"{}")[0] == 401
    assert triggered == []
    code, body = call(base + "/hooks/git", b'{"ref":"refs/heads/main"}', {"Authorization": f"Bearer {TOKEN}"})
    assert code == 202 and body["ref"] == "refs/heads/main"
    assert triggered == [None]


def test_github_signature_and_gitlab_token(api) -> None:  # type: ignore[no-untyped-def]
    base, triggered, _ = api
    payload = b'{"ref":"refs/heads/main","after":"abc"}'
    sig = "sha256=" + hmac.new(TOKEN.encode(), payload, hashlib.sha256).hexdigest()
    assert (
        call(base + "/hooks/git", payload, {"X-Hub-Signature-256": sig, "X-GitHub-Event": "push"})[0] == 202
    )
    assert call(base + "/hooks/git", payload, {"X-Hub-Signature-256": "sha256=" + "0" * 64})[0] == 401
    assert call(base + "/hooks/git", payload, {"X-Gitlab-Token": TOKEN})[0] == 202
    assert triggered == [None, None]


def test_approve_endpoint(api) -> None:  # type: ignore[no-untyped-def]
    base, triggered, _ = api
    auth = {"Authorization": f"Bearer {TOKEN}"}
    code, body = call(
        base + "/api/v1/releases/host-metrics/approve", b'{"stage":"prod","approver":"alice"}', auth
    )
    assert code == 200 and body["approver"] == "alice"
    assert triggered == ["host-metrics"]
    assert call(base + "/api/v1/releases/host-metrics/approve", b'{"stage":"prod"}', auth)[0] == 400
    assert call(base + "/api/v1/releases/other/approve", b'{"stage":"prod","approver":"a"}', auth)[0] == 404
