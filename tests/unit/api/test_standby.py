"""Readiness and the standby API (controller/api/standby.py): a standby is alive (/healthz 200) and
not ready (/readyz 503), and refuses everything else with the API's error body; the leader's full
API is ready only while it leads and is ok; the full API can take the standby's address over."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from apikit import World
from fastapi.testclient import TestClient

from controller.api.server import ApiServer
from controller.api.standby import NOT_LEADER, create_standby_app


def test_standby_is_alive_not_ready_and_serves_nothing_else() -> None:
    c = TestClient(create_standby_app())
    r = c.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"ok": True, "leader": False})
    r = c.get("/readyz")
    assert (r.status_code, r.json()) == (503, {"ready": False, "leader": False})
    for method, path in (("GET", "/api/v1/releases"), ("POST", "/api/v1/releases/x/approve"),
                         ("POST", "/hooks/git"), ("GET", "/metrics"), ("GET", "/")):
        r = c.request(method, path)
        assert r.status_code == 503, (method, path)
        assert r.json() == {"error": NOT_LEADER, "code": 503, "reason": "NotLeader"}
        assert r.headers["Retry-After"] == "5"


def test_full_api_is_ready_only_when_leading_and_ok(repo: Path, tmp_path: Path) -> None:
    w = World(repo, tmp_path)
    r = w.client.get("/readyz")
    assert (r.status_code, r.json()) == (200, {"ready": True, "leader": True})
    for health, leader in (({"ok": False, "leader": True, "error": "pass failed"}, True),
                           ({"ok": False, "leader": False}, False)):
        w.state.health = lambda h=health: h  # type: ignore[misc]
        r = w.client.get("/readyz")
        assert (r.status_code, r.json()) == (503, {"ready": False, "leader": leader})


def _get(port: int, path: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_the_full_api_takes_the_standby_address_over(repo: Path, tmp_path: Path) -> None:
    standby = ApiServer("127.0.0.1:0", None, app=create_standby_app())
    standby.start()
    port = standby.address[1]
    assert _get(port, "/readyz")[0] == 503
    standby.stop()
    full = ApiServer(f"127.0.0.1:{port}", World(repo, tmp_path).state)
    full.start()
    try:
        assert _get(port, "/readyz") == (200, {"ready": True, "leader": True})
    finally:
        full.stop()
