"""The HTTP API (FastAPI): principals by token, approvals bound to what was looked at, the webhook's
own secret, and refusals that never read a body or answer 500.

Approvals go through the real ``controller.audit.approvals`` against a copy of the example repo
whose prod Environment names ``alice`` (and the group ``sre``) as its approvers.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path

import pytest
from apikit import APPROVE, SECRET, World, auth

from controller.api.limits import content_length
from controller.audit.ledger import Ledger


@pytest.fixture
def world(repo: Path, tmp_path: Path) -> Iterator[World]:
    w = World(repo, tmp_path)
    yield w
    w.client.close()


def test_openapi_is_served_and_lists_the_endpoints(world: World) -> None:
    r = world.client.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for p in ("/healthz", "/metrics", "/api/v1/releases", "/api/v1/releases/{name}",
              "/api/v1/releases/{name}/history", "/hooks/git", "/api/v1/releases/{name}/approve"):
        assert p in paths, p


def test_healthz_shows_details_only_to_principals(world: World) -> None:
    r = world.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"ok": True, "leader": True}
    assert "secret detail" not in r.text
    r = world.client.get("/healthz", headers=auth(world.bob))
    assert r.json()["error"] == "git: secret detail" and r.json()["commit"] == "abc"


@pytest.mark.parametrize("path", ["/api/v1/releases", "/api/v1/releases/host-metrics",
                                  "/api/v1/releases/host-metrics/history", "/metrics"])
def test_reads_need_a_valid_token(world: World, path: str) -> None:
    for headers in ({}, auth("pct_not-a-real-token"), auth(world.alice + "x"), {"Authorization": "Basic YTpi"}):
        r = world.client.get(path, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["code"] == 401 and "token" in r.json()["error"]
        assert r.headers["www-authenticate"] == "Bearer"
    assert world.client.get(path, headers=auth(world.bob)).status_code == 200


def test_reads_with_a_token(world: World) -> None:
    h = auth(world.bob)
    body = world.client.get("/api/v1/releases", headers=h).json()
    assert body["items"][0]["name"] == "host-metrics"
    assert world.client.get("/api/v1/releases/host-metrics", headers=h).json()["status"]["version"] == "1.0.0"
    r = world.client.get("/api/v1/releases/nope", headers=h)
    assert r.status_code == 404 and r.json() == {"error": "release 'nope' not found", "code": 404,
                                                 "reason": "ReleaseNotFound"}
    assert world.client.get("/api/v1/releases/Bad_Name", headers=h).status_code == 404
    assert world.client.get("/metrics", headers=h).text == "pipectl_up 1\n"
    r = world.client.get("/no/such/thing", headers=h)
    assert r.status_code == 404 and r.json()["code"] == 404


@pytest.mark.parametrize("value", [b"Bearer \xc3\xa9\xc3\xa9", b"Bearer pct_\xff\xfe", b"\xe2\x82\xac", b"Bearer",
                                   b"Bearer a b", b"bearer " + b"x" * 5000])
def test_malformed_or_non_ascii_authorization_is_401(world: World, value: bytes) -> None:
    r = world.client.get("/api/v1/releases", headers={"Authorization": value})  # type: ignore[dict-item]
    assert r.status_code == 401, r.text
    r = world.client.post(APPROVE, json={"stage": "prod", "version": "1.0.0"},
                          headers={"Authorization": value})  # type: ignore[dict-item]
    assert r.status_code == 401, r.text


def test_a_revoked_token_is_refused(world: World) -> None:
    tid = next(t["id"] for t in world.tokens.list() if t["user"] == "bob")
    assert world.tokens.revoke(tid)
    assert world.client.get("/api/v1/releases", headers=auth(world.bob)).status_code == 401


def test_empty_token_store_refuses_every_request_but_healthz(repo: Path, tmp_path: Path) -> None:
    w = World(repo, tmp_path, with_tokens=False)
    assert w.tokens.active_count() == 0
    for headers in ({}, auth(""), auth("pct_"), auth("pct_" + "A" * 43), auth(SECRET)):
        assert w.client.post(APPROVE, json={"stage": "prod", "version": "1.0.0"}, headers=headers).status_code == 401
        assert w.client.get("/api/v1/releases", headers=headers).status_code == 401
    assert w.client.post("/hooks/git", content=b"{}").status_code == 401
    assert w.triggered == []
    assert w.store.approval("host-metrics", "prod", "1.0.0", "x") is None
    assert not [r for r in Ledger(w.store).records() if r["kind"] == "approval"]


# --- approvals -----------------------------------------------------------------------------------


def test_an_allowed_principal_approves_and_is_the_one_recorded(world: World) -> None:
    r = world.client.post(APPROVE, json={"stage": "prod", "version": "1.0.0"}, headers=auth(world.alice))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["principal"] == "alice" and out["version"] == "1.0.0" and out["new"] is True
    assert out["revision"].startswith("sha256:")
    assert world.triggered == ["host-metrics"]
    assert world.store.approval("host-metrics", "prod", "1.0.0", out["revision"])["approver"] == "alice"  # type: ignore[index]
    rec = [x for x in Ledger(world.store).records("host-metrics") if x["kind"] == "approval"]
    assert len(rec) == 1 and rec[0]["actor"] == "alice" and rec[0]["revision"] == out["revision"]
    assert out["revision"] in rec[0]["message"]
    # a member of an approver group may approve too; the same revision twice is one approval
    r = world.client.post(APPROVE, json={"stage": "prod", "version": "1.0.0", "revision": out["revision"]},
                          headers=auth(world.carol))
    assert r.status_code == 200 and r.json()["new"] is False


def test_a_claimed_approver_name_is_refused(world: World) -> None:
    r = world.client.post(APPROVE, json={"stage": "prod", "version": "1.0.0", "approver": "alice"},
                          headers=auth(world.bob))
    assert r.status_code == 400 and "approver" in r.json()["error"]


def test_a_principal_not_among_the_approvers_is_403(world: World) -> None:
    r = world.client.post(APPROVE, json={"stage": "prod", "version": "1.0.0"}, headers=auth(world.bob))
    assert r.status_code == 403, r.text
    assert r.json()["reason"] == "NotAnApprover" and "bob may not approve stage prod" in r.json()["error"]
    assert world.triggered == []
    # a stage without approvers: any principal
    r = world.client.post(APPROVE, json={"stage": "staging", "version": "1.0.0"}, headers=auth(world.bob))
    assert r.status_code == 200 and r.json()["principal"] == "bob"


def test_unknown_stage_is_400_and_unknown_release_404(world: World) -> None:
    r = world.client.post(APPROVE, json={"stage": "qa", "version": "1.0.0"}, headers=auth(world.alice))
    assert r.status_code == 400 and r.json()["reason"] == "UnknownStage", r.text
    assert "dev, staging, canary, prod" in r.json()["error"]
    r = world.client.post("/api/v1/releases/nope/approve", json={"stage": "prod", "version": "1.0.0"},
                          headers=auth(world.alice))
    assert r.status_code == 404 and r.json()["reason"] == "ReleaseNotFound"
    r = world.client.post(APPROVE, json={"stage": "prod"}, headers=auth(world.alice))
    assert r.status_code == 400 and "version" in r.json()["error"]
    r = world.client.post(APPROVE, content=b"{not json", headers={**auth(world.alice), "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == 400


def test_a_stale_version_or_revision_is_409_naming_the_current(world: World) -> None:
    r = world.client.post(APPROVE, json={"stage": "prod", "version": "0.9.0"}, headers=auth(world.alice))
    assert r.status_code == 409 and r.json()["reason"] == "VersionChanged"
    assert "at version 1.0.0 now" in r.json()["error"]
    r = world.client.post(APPROVE, json={"stage": "prod", "version": "9.9.9"}, headers=auth(world.alice))
    assert r.status_code == 409  # no pre-approving a version that does not exist
    r = world.client.post(APPROVE, json={"stage": "prod", "version": "1.0.0", "revision": "sha256:" + "0" * 64},
                          headers=auth(world.alice))
    assert r.status_code == 409 and r.json()["reason"] == "RevisionChanged"
    assert world.triggered == []
    assert not [x for x in Ledger(world.store).records() if x["kind"] == "approval"]


# --- the webhook ---------------------------------------------------------------------------------


def test_webhook_accepts_the_secret_only(world: World) -> None:
    payload = b'{"ref":"refs/heads/main","after":"abc"}'
    sig = "sha256=" + hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest()
    r = world.client.post("/hooks/git", content=payload, headers={"X-Hub-Signature-256": sig, "X-GitHub-Event": "push"})
    assert r.status_code == 202 and r.json()["ref"] == "refs/heads/main"
    assert world.client.post("/hooks/git", content=payload, headers={"X-Gitlab-Token": SECRET}).status_code == 202
    assert world.client.post("/hooks/git", content=payload, headers=auth(SECRET)).status_code == 202
    assert world.triggered == [None, None, None]
    # a user's token is neither an HMAC key nor a webhook credential
    user_sig = "sha256=" + hmac.new(world.alice.encode(), payload, hashlib.sha256).hexdigest()
    for headers in ({"X-Hub-Signature-256": user_sig}, {"X-Gitlab-Token": world.alice}, auth(world.alice),
                    {"X-Hub-Signature-256": "sha256=" + "0" * 64}, {"X-Hub-Signature-256": (sig + "\u00e9").encode()}, {}):
        r = world.client.post("/hooks/git", content=payload, headers=headers)  # type: ignore[arg-type]
        assert r.status_code == 401, headers
    # the signature covers the body
    assert world.client.post("/hooks/git", content=payload + b" ", headers={"X-Hub-Signature-256": sig}).status_code == 401
    assert world.triggered == [None, None, None]


# --- bodies --------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413(world: World) -> None:
    big = b"{" + b" " * 5000 + b"}"
    r = world.client.post("/hooks/git", content=big, headers=auth(SECRET))
    assert r.status_code == 413 and r.json()["code"] == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b" " * 1000

    r = world.client.post(APPROVE, content=chunks(), headers={**auth(world.alice), "Content-Type": "application/json"})
    assert r.status_code == 413, r.text
    assert world.triggered == []


@pytest.mark.parametrize(("headers", "want"), [
    ([], (None, None)),
    ([(b"content-length", b"12")], (12, None)),
    ([(b"content-length", b"-1")], (None, "invalid Content-Length")),
    ([(b"content-length", b" 7 ")], (7, None)),
    ([(b"content-length", b"1e3")], (None, "invalid Content-Length")),
    ([(b"content-length", b"1"), (b"Content-Length", b"2")], (None, "conflicting Content-Length headers")),
])
def test_content_length_parsing(headers: list[tuple[bytes, bytes]], want: tuple[int | None, str | None]) -> None:
    assert content_length(headers) == want
