"""An empty token file is refused, never a request without a credential: ``config set-context
--token-file`` refuses it, and a context whose token file is emptied later fails each verb that
calls the API (naming the file, exit 1, nothing sent) while local reads keep working."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from tests.unit.cli.clikit import invoke, status, store_with


@pytest.fixture(autouse=True)
def own_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPECTL_CONFIG", str(tmp_path / "config.yaml"))
    for var in ("PIPECTL_STATE", "PIPECTL_SERVER", "PIPECTL_REPO", "PIPECTL_TOKEN"):
        monkeypatch.delenv(var, raising=False)


def test_set_context_refuses_an_empty_token_file(tmp_path: Path) -> None:
    for text in ("", "\n", "  \n\t"):
        token = tmp_path / "tok"
        token.write_text(text)
        r = invoke("config", "set-context", "c", "--token-file", str(token))
        assert r.exit_code == 1
        assert r.stderr == (f"error: --token-file {token}: the file is empty "
                            "(`pipectl token create` prints a token)\n")
        assert not (tmp_path / "config.yaml").exists()  # nothing recorded


def test_a_token_file_emptied_later_refuses_api_calls(tmp_path: Path) -> None:
    accepted: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:  # "a controller" that answers 503 to all and records what reached it
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                request = conn.recv(65536)
                if not request.startswith(b"GET /healthz "):  # the reachability probe needs no token
                    accepted.append(request)
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    server = f"http://127.0.0.1:{listener.getsockname()[1]}"
    token = tmp_path / "tok"
    token.write_text("pct_x\n")
    state = store_with(tmp_path / "s.db", {"alpha": status("1.0.0", {"dev": ("1.0.0", "Succeeded")})})
    assert invoke("config", "set-context", "c", "--server", server, "--token-file", str(token)).exit_code == 0
    token.write_text("")
    try:
        for verb in (["get", "releases"], ["version"], ["suspend", "alpha"],
                     ["approve", "alpha", "--stage", "prod", "--version", "1.0.0"]):
            r = invoke(*verb)
            assert r.exit_code == 1, (verb, r.output)
            assert f"error: context 'c': token-file {token} is empty" in r.stderr, (verb, r.stderr)
        assert accepted == []
        # reading the state store needs no token: the empty file does not get in the way
        r = invoke("get", "releases", "--state", state, "-o", "name")
        assert r.exit_code == 0 and r.stdout == "pipelinerelease/alpha\n", r.output
    finally:
        listener.close()
