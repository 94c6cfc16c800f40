"""`GET /api/v1/version` and suspend/resume through the API: principals only, recorded, 404s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller import __version__
from controller.store.suspend import suspension
from tests.unit.api.apikit import World, auth

SUSPEND = "/api/v1/releases/host-metrics/suspend"
RESUME = "/api/v1/releases/host-metrics/resume"


@pytest.fixture
def world(repo: Path, tmp_path: Path) -> Iterator[World]:
    w = World(repo, tmp_path)
    yield w
    w.client.close()


def test_version_needs_a_principal(world: World) -> None:
    assert world.client.get("/api/v1/version").status_code == 401
    body = world.client.get("/api/v1/version", headers=auth(world.bob)).json()
    assert body["version"] == __version__ and body["apiVersion"] == "pipectl.dev/v1alpha1"
    assert "/api/v1/version" in world.client.get("/openapi.json").json()["paths"]


def test_suspend_and_resume_record_the_principal(world: World) -> None:
    assert world.client.post(SUSPEND, json={"reason": "freeze"}).status_code == 401
    r = world.client.post(SUSPEND, json={"reason": "freeze"}, headers=auth(world.bob))
    assert r.status_code == 200 and r.json() == {"name": "host-metrics", "suspended": True, "changed": True}
    held = suspension(world.store, "host-metrics")
    assert held is not None and held["by"] == "bob" and held["reason"] == "freeze"
    assert world.triggered == ["host-metrics"]  # the controller is woken to show it at once
    again = world.client.post(SUSPEND, headers=auth(world.alice)).json()
    assert again["changed"] is False and suspension(world.store, "host-metrics")["by"] == "bob"  # type: ignore[index]
    r = world.client.post(RESUME, headers=auth(world.alice))
    assert r.status_code == 200 and r.json()["suspended"] is False
    assert suspension(world.store, "host-metrics") is None
    reasons = [e["reason"] for e in world.store.recent_events("host-metrics")]
    assert reasons == ["Suspended", "Resumed"]


def test_suspend_an_unknown_release_is_404(world: World) -> None:
    r = world.client.post("/api/v1/releases/nope/suspend", headers=auth(world.bob))
    assert r.status_code == 404 and r.json()["reason"] == "ReleaseNotFound"
    r = world.client.post(SUSPEND, json={"reason": "x", "extra": 1}, headers=auth(world.bob))
    assert r.status_code == 400
