"""Bad requests on the wire get a clear 4xx, never a 500 and never a wait for a body: a negative,
malformed or huge ``Content-Length`` (the JSON error says which), and non-ASCII bytes in the
headers that carry credentials (webhook signature, GitLab token, a trusted proxy's user) or in
any other header (ignored). ``test_uvicorn.py`` holds the status-only cases; this file checks
the bodies (a request h11 cannot parse is answered by ``controller.api.wire``)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from apikit import APPROVE, World
from test_uvicorn import post_head, raw, served

from controller.api.auth import TrustedProxy
from controller.api.server import ApiServer

BAD_LENGTH = {"error": "invalid HTTP request: bad Content-Length", "code": 400, "reason": "BadRequest"}


@pytest.fixture
def api(repo: Path, tmp_path: Path) -> Iterator[tuple[World, ApiServer]]:
    w = World(repo, tmp_path)
    srv = served(w)
    yield w, srv
    srv.stop()


@pytest.mark.parametrize("path", [APPROVE, "/hooks/git", "/api/v1/releases"])
@pytest.mark.parametrize("length", ["-1", "-0", "+5", "12abc", " - 3", "9" * 40])
def test_a_negative_or_malformed_content_length_is_a_clear_400(
    api: tuple[World, ApiServer], path: str, length: str
) -> None:
    w, srv = api
    t0 = time.monotonic()
    code, body = raw(srv.address, post_head(path, length, f"Authorization: Bearer {w.alice}\r\n".encode()))
    assert time.monotonic() - t0 < 3 and code == 400
    assert json.loads(body) == BAD_LENGTH  # h11 refuses it before the app (controller.api.wire says why)
    assert w.triggered == [] and w.store.approval("host-metrics", "prod", "1.0.0", "x") is None


def test_a_huge_content_length_is_a_clear_413(api: tuple[World, ApiServer]) -> None:
    w, srv = api
    for path in (APPROVE, "/hooks/git"):
        code, body = raw(srv.address, post_head(path, str(2**62), f"Authorization: Bearer {w.alice}\r\n".encode()))
        assert code == 413
        assert json.loads(body) == {"error": "request body larger than 4096 bytes", "code": 413, "reason": "TooLarge"}


@pytest.mark.parametrize("header", [b"X-Hub-Signature-256: sha256=\xc3\xa9\xff", b"X-Gitlab-Token: \xe2\x82\xac\x80",
                                    b"Authorization: Bearer webhook-s3cret\xc3\xa9"])
def test_non_ascii_webhook_credentials_are_401(api: tuple[World, ApiServer], header: bytes) -> None:
    w, srv = api
    code, body = raw(srv.address, post_head("/hooks/git", "2", header + b"\r\n") + b"{}")
    assert code == 401
    assert json.loads(body) == {"error": "the webhook secret is required", "code": 401, "reason": "Unauthorized"}
    assert w.triggered == []


def test_a_non_ascii_proxy_user_is_401(repo: Path, tmp_path: Path) -> None:
    w = World(repo, tmp_path)
    srv = served(w, TrustedProxy.parse("X-Forwarded-User", ["127.0.0.1"]))
    try:
        for user in (b"\xc3\xa9lise", b"\xff\xfe", b"alice\x80"):
            req = b"GET /api/v1/releases HTTP/1.1\r\nHost: x\r\nX-Forwarded-User: " + user + b"\r\n\r\n"
            code, body = raw(srv.address, req)
            assert code == 401 and json.loads(body)["reason"] == "Unauthorized", user
    finally:
        srv.stop()


def test_non_ascii_in_another_header_is_ignored(api: tuple[World, ApiServer]) -> None:
    w, srv = api
    req = (b"GET /api/v1/releases HTTP/1.1\r\nHost: x\r\nX-Note: caf\xc3\xa9 \xff\r\nAuthorization: Bearer "
           + w.alice.encode() + b"\r\n\r\n")
    code, body = raw(srv.address, req)
    assert code == 200 and json.loads(body)["kind"] == "PipelineReleaseList"
