"""``GET /api/v1/releases/NAME/permissions``: per stage awaiting approval, whether the caller may
approve it now, answered by the approve endpoint's own check (``controller.audit.approvals``).

The World's repo is a copy of the example whose prod Environment names ``alice`` and the group
``sre`` as approvers; bob (group ``dev``) is not one. Each "allowed" answer is then checked by
posting exactly what it names to the approve endpoint, and each refusal by the endpoint refusing it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apikit import APPROVE, World, auth
from fastapi.testclient import TestClient

from controller.api.server import ApiState, create_app
from controller.audit.approvals import awaiting_approval
from controller.source.revision import revision
from controller.source.validate import load_repo

PERMISSIONS = "/api/v1/releases/host-metrics/permissions"
PROD_WAITS = {
    "version": "1.0.0",
    "phase": "Pending",
    "currentStage": "canary",
    "stages": {
        "dev": {"version": "1.0.0", "phase": "Succeeded", "gates": []},
        "canary": {"version": "1.0.0", "phase": "Succeeded", "gates": []},
        "prod": {"version": None, "phase": "Pending", "reason": "AwaitingApproval",
                 "message": "approve with: pipectl approve <release> --stage prod", "gates": []},
    },
}


@pytest.fixture
def world(repo: Path, tmp_path: Path) -> Iterator[World]:
    w = World(repo, tmp_path)
    w.store.put_status("host-metrics", PROD_WAITS)
    yield w
    w.client.close()


def _digest(w: World) -> str:
    snap = load_repo(w.repo)
    return revision(snap.release("host-metrics"), snap.root).digest


def test_an_approver_may_approve_and_the_approval_it_names_is_accepted(world: World) -> None:
    r = world.client.get(PERMISSIONS, headers=auth(world.alice))
    assert r.status_code == 200, r.text
    body = r.json()
    digest = _digest(world)
    assert body["name"] == "host-metrics" and body["principal"] == "alice"
    assert body["stages"] == [{"stage": "prod", "version": "1.0.0", "revision": digest, "canApprove": True,
                               "reason": None, "refusal": None}]
    # carol is an approver through her group sre
    carol = world.client.get(PERMISSIONS, headers=auth(world.carol)).json()["stages"]
    assert [s["canApprove"] for s in carol] == [True]
    # what the page would post: exactly the version and digest it was shown
    shown = body["stages"][0]
    r = world.client.post(APPROVE, headers=auth(world.alice),
                          json={"stage": "prod", "version": shown["version"], "revision": shown["revision"]})
    assert r.status_code == 200 and r.json()["principal"] == "alice" and r.json()["revision"] == digest


def test_a_principal_not_in_approvers_may_not_and_is_told_why(world: World) -> None:
    r = world.client.get(PERMISSIONS, headers=auth(world.bob))
    assert r.status_code == 200, r.text
    [prod] = r.json()["stages"]
    assert prod["stage"] == "prod" and prod["version"] == "1.0.0" and prod["revision"] == _digest(world)
    assert prod["canApprove"] is False and prod["refusal"] == "NotAnApprover"
    assert prod["reason"] == "bob may not approve stage prod (see its Environment's approvers)"
    # the approve endpoint refuses him with the very same words
    r = world.client.post(APPROVE, headers=auth(world.bob),
                          json={"stage": "prod", "version": prod["version"], "revision": prod["revision"]})
    assert r.status_code == 403 and r.json()["error"] == prod["reason"]


def test_a_stage_without_approvers_lets_anyone_approve(world: World) -> None:
    waits = {"stages": {"dev": {"phase": "Pending", "reason": "AwaitingApproval", "gates": []}}}
    world.store.put_status("host-metrics", waits)
    [dev] = world.client.get(PERMISSIONS, headers=auth(world.bob)).json()["stages"]
    assert dev["stage"] == "dev" and dev["canApprove"] is True


def test_a_newer_commit_changes_the_answer_and_the_old_digest_is_refused(world: World) -> None:
    shown = world.client.get(PERMISSIONS, headers=auth(world.alice)).json()["stages"][0]
    manifest = world.repo / "releases" / "host-metrics.yaml"
    manifest.write_text(manifest.read_text().replace("version: 1.0.0", "version: 1.0.1", 1))
    now = world.client.get(PERMISSIONS, headers=auth(world.alice)).json()["stages"][0]
    assert now["version"] == "1.0.1" and now["revision"] != shown["revision"] and now["canApprove"] is True
    r = world.client.post(APPROVE, headers=auth(world.alice),
                          json={"stage": "prod", "version": shown["version"], "revision": shown["revision"]})
    assert r.status_code == 409 and r.json()["reason"] == "VersionChanged"


def test_unknown_release_is_404_and_no_token_is_401(world: World) -> None:
    r = world.client.get("/api/v1/releases/nope/permissions", headers=auth(world.alice))
    assert r.status_code == 404 and r.json() == {"error": "release 'nope' not found", "code": 404,
                                                 "reason": "ReleaseNotFound"}
    for headers in ({}, auth("pct_not-a-real-token")):
        r = world.client.get(PERMISSIONS, headers=headers)
        assert r.status_code == 401 and r.json()["reason"] == "Unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"


def test_nothing_awaiting_approval_is_an_empty_list(world: World) -> None:
    world.store.put_status("host-metrics", {"version": "1.0.0", "stages": {"dev": {"phase": "Succeeded"}}})
    body = world.client.get(PERMISSIONS, headers=auth(world.alice)).json()
    assert body["stages"] == [] and body["commit"] is None


def test_without_a_controller_it_is_501(world: World) -> None:
    state = ApiState(**{**world.state.__dict__, "snapshot": None})
    with TestClient(create_app(state)) as c:
        r = c.get(PERMISSIONS, headers=auth(world.alice))
    assert r.status_code == 501 and r.json()["reason"] == "NotImplemented"


def test_the_endpoint_and_its_model_are_in_the_openapi_document(world: World) -> None:
    doc = world.client.get("/openapi.json").json()
    op = doc["paths"]["/api/v1/releases/{name}/permissions"]["get"]
    assert {"200", "401", "404", "409", "501", "503"} <= set(op["responses"])
    ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    model = doc["components"]["schemas"][ref]
    assert set(model["properties"]) == {"name", "principal", "commit", "stages"}
    item = doc["components"]["schemas"]["StagePermissionOut"]["properties"]
    assert set(item) == {"stage", "version", "revision", "canApprove", "reason", "refusal"}
    assert op["security"] == [{"bearer": []}]


@pytest.mark.parametrize(("stage", "want"), [
    ({"phase": "Pending", "reason": "AwaitingApproval"}, True),
    ({"phase": "Verifying", "gates": [{"name": "ok", "type": "approval", "verdict": "inconclusive"}]}, True),
    ({"phase": "Verifying", "gates": [{"name": "ok", "type": "approval", "verdict": "pass"}]}, False),
    ({"phase": "RolledBack", "gates": [{"name": "ok", "type": "approval", "verdict": "inconclusive"}]}, False),
    ({"phase": "Verifying", "gates": [{"name": "dq", "type": "dataQuality", "verdict": "inconclusive"}]}, False),
    ({"phase": "Pending", "reason": "PreviousStageNotReady"}, False),
    ("not a mapping", False),
])
def test_which_stages_await_approval(stage: Any, want: bool) -> None:
    assert awaiting_approval({"stages": {"prod": stage}}) == (["prod"] if want else [])
    assert awaiting_approval({}) == [] and awaiting_approval({"stages": []}) == []
