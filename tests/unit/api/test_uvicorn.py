"""The API served by uvicorn on a loopback port, spoken to with raw sockets: refusals come before
any body is read, raw non-ASCII header bytes are a 401, a trusted proxy's header names the
principal (from that proxy only), and idle keep-alive connections are closed."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from apikit import APPROVE, World

from controller.api.auth import TrustedProxy
from controller.api.server import ApiServer


def raw(addr: tuple[str, int], request: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
    """Send ``request`` (headers only: no body follows) and read the reply; a server that waited
    for the announced body would time out here."""
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(head.split(b" ")[1]), body


def served(world: World, trusted: TrustedProxy | None = None, keep_alive: int = 5) -> ApiServer:
    world.state.trusted = trusted
    srv = ApiServer("127.0.0.1:0", world.state, keep_alive=keep_alive)
    srv.start()
    return srv


@pytest.fixture
def api(repo: Path, tmp_path: Path) -> Iterator[tuple[World, ApiServer]]:
    w = World(repo, tmp_path)
    srv = served(w)
    yield w, srv
    srv.stop()


def post_head(path: str, length: str, extra: bytes = b"") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n").encode() + extra + b"\r\n"


@pytest.mark.parametrize("length", ["-1", "-99999", "abc", "1e9", "0x10"])
def test_a_bad_content_length_is_refused_before_the_body(api: tuple[World, ApiServer], length: str) -> None:
    w, srv = api
    t0 = time.monotonic()
    code, _ = raw(srv.address, post_head("/hooks/git", length, f"Authorization: Bearer {w.alice}\r\n".encode()))
    assert 400 <= code < 500 and time.monotonic() - t0 < 3
    assert w.triggered == []


@pytest.mark.parametrize("length", ["4097", "999999999999", "9" * 40])
def test_a_huge_content_length_is_refused_before_the_body(api: tuple[World, ApiServer], length: str) -> None:
    w, srv = api
    t0 = time.monotonic()
    code, body = raw(srv.address, post_head(APPROVE, length, f"Authorization: Bearer {w.alice}\r\n".encode()))
    if len(length) > 20:  # h11 refuses a length of that many digits itself (400, controller.api.wire)
        assert code == 400
    else:
        assert code == 413 and json.loads(body)["code"] == 413
    assert time.monotonic() - t0 < 3


def test_raw_non_ascii_authorization_bytes_are_401(api: tuple[World, ApiServer]) -> None:
    _, srv = api
    for value in (b"Bearer \xc3\xa9t\xc3\xa9", b"Bearer \xff\xfe\xfd", b"\x80\x81"):
        req = b"GET /api/v1/releases HTTP/1.1\r\nHost: x\r\nAuthorization: " + value + b"\r\n\r\n"
        code, body = raw(srv.address, req)
        assert code == 401 and json.loads(body)["code"] == 401


def test_a_trusted_proxy_names_the_principal(repo: Path, tmp_path: Path) -> None:
    w = World(repo, tmp_path)
    body = b'{"stage": "prod", "version": "1.0.0"}'
    head = post_head(APPROVE, str(len(body)), b"X-Forwarded-User: alice\r\n")
    srv = served(w, TrustedProxy.parse("X-Forwarded-User", ["127.0.0.1"]))
    try:
        code, out = raw(srv.address, head + body)
        assert code == 200 and json.loads(out)["principal"] == "alice", out
    finally:
        srv.stop()
    # from any other peer the header is ignored: no token, no principal
    w2 = World(repo, tmp_path / "other")
    srv = served(w2, TrustedProxy.parse("X-Forwarded-User", ["10.1.2.3"]))
    try:
        code, _ = raw(srv.address, head + body)
        assert code == 401
    finally:
        srv.stop()


def test_idle_keep_alive_connections_are_closed(repo: Path, tmp_path: Path) -> None:
    w = World(repo, tmp_path)
    srv = served(w, keep_alive=1)
    try:
        with socket.create_connection(srv.address, timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            first = s.recv(65536)
            assert b" 200 " in first.split(b"\r\n")[0]
            t0 = time.monotonic()
            rest = b""
            while chunk := s.recv(65536):
                rest += chunk
            assert time.monotonic() - t0 < 5  # closed by the server, not by our timeout
    finally:
        srv.stop()
