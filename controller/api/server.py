"""The controller's HTTP API (stdlib ``http.server``; one thread per request).

- ``GET /healthz``, ``GET /metrics`` (Prometheus text)
- ``GET /api/v1/releases``, ``GET /api/v1/releases/NAME``, ``GET /api/v1/releases/NAME/history``
- ``POST /hooks/git`` — wake the controller (generic, GitHub and GitLab push payloads)
- ``POST /api/v1/releases/NAME/approve`` — ``{"stage": "prod", "approver": "alice"}``

Reads are open to loopback clients; every other request needs the API token, given as
``Authorization: Bearer <token>``, GitLab's ``X-Gitlab-Token`` or GitHub's ``X-Hub-Signature-256``
(HMAC-SHA256 of the body with the token as secret). The token is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog

from controller.store.db import Store

log = structlog.get_logger(__name__)

MAX_BODY = 1024 * 1024
_NAME = re.compile(r"\A[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


class ApiState:
    """What the handlers need: the store, the token, and hooks into the running controller."""

    def __init__(
        self,
        store: Store,
        token: str,
        trigger: Callable[[str | None], None],
        health: Callable[[], dict[str, Any]],
        metrics: Callable[[], bytes],
        approve: Callable[[str, str, str], dict[str, Any]],
    ):
        self.store = store
        self.token = token
        self.trigger = trigger
        self.health = health
        self.metrics = metrics
        self.approve = approve


def make_handler(state: ApiState) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"state": state})


class _Handler(BaseHTTPRequestHandler):
    server_version = "pipectl"
    state: ApiState

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http", client=self.client_address[0], request=self.requestline)

    # --- helpers ---------------------------------------------------------------------------

    def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
        data = (
            body if isinstance(body, bytes) else (json.dumps(body, default=str, indent=2) + "\n").encode()
        )
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code: HTTPStatus, message: str) -> None:
        self._send(code, {"error": message, "code": int(code)})

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        if n < 0:
            raise ValueError("negative Content-Length")
        if n > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(n) if n else b""

    def _authorized(self, body: bytes) -> bool:
        tok = self.state.token
        if not tok:
            return False  # an empty token must never let every request through
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and _same(auth[7:].strip(), tok):
            return True
        gl = self.headers.get("X-Gitlab-Token")
        if gl and _same(gl, tok):
            return True
        sig = self.headers.get("X-Hub-Signature-256", "")
        if sig.startswith("sha256="):
            want = hmac.new(tok.encode(), body, hashlib.sha256).hexdigest()
            return hmac.compare_digest(sig[7:], want)
        return False

    # --- GET -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._guard(self._get)

    def do_POST(self) -> None:
        self._guard(self._post)

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as e:  # an API bug must answer 500, not drop the connection
            log.error("api handler failed", path=self.path, error=repr(e))
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")

    def _get(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/healthz":
            h = self.state.health()
            self._send(HTTPStatus.OK if h.get("ok") else HTTPStatus.SERVICE_UNAVAILABLE, h)
            return
        if not _is_loopback(self.client_address[0]) and not self._authorized(b""):
            self._error(HTTPStatus.UNAUTHORIZED, "token required")
            return
        if path == "/metrics":
            self._send(HTTPStatus.OK, self.state.metrics(), "text/plain; version=0.0.4")
            return
        if path == "/api/v1/releases":
            items = [{"name": n, "status": s} for n, s in self.state.store.list_statuses().items()]
            self._send(
                HTTPStatus.OK,
                {"apiVersion": "pipectl.dev/v1alpha1", "kind": "PipelineReleaseList", "items": items},
            )
            return
        m = re.fullmatch(r"/api/v1/releases/([^/]+)(/history)?", path)
        if m and _NAME.fullmatch(m.group(1)):
            name = m.group(1)
            status = self.state.store.get_status(name)
            if status is None:
                self._error(HTTPStatus.NOT_FOUND, f"release {name!r} not found")
            elif m.group(2):
                self._send(HTTPStatus.OK, {"name": name, "history": self.state.store.history(name)})
            else:
                self._send(
                    HTTPStatus.OK,
                    {
                        "apiVersion": "pipectl.dev/v1alpha1",
                        "kind": "PipelineRelease",
                        "metadata": {"name": name},
                        "status": status,
                        "events": self.state.store.recent_events(name),
                    },
                )
            return
        self._error(HTTPStatus.NOT_FOUND, "no such endpoint")

    # --- POST ------------------------------------------------------------------------------

    def _post(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            body = self._body()
        except ValueError as e:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(e))
            return
        if not self._authorized(body):
            self._error(HTTPStatus.UNAUTHORIZED, "a valid token is required")
            return
        if path == "/hooks/git":
            ref = None
            try:
                payload = json.loads(body) if body else {}
                ref = payload.get("ref") if isinstance(payload, dict) else None
            except json.JSONDecodeError:
                payload = {}
            self.state.trigger(None)
            log.info(
                "git webhook",
                ref=ref,
                source=self.headers.get("X-GitHub-Event")
                or self.headers.get("X-Gitlab-Event")
                or "generic",
            )
            self._send(
                HTTPStatus.ACCEPTED, {"accepted": True, "ref": ref, "at": datetime.now(UTC).isoformat()}
            )
            return
        m = re.fullmatch(r"/api/v1/releases/([^/]+)/approve", path)
        if m and _NAME.fullmatch(m.group(1)):
            try:
                req = json.loads(body or b"{}")
                stage, approver = str(req["stage"]), str(req["approver"])
            except (json.JSONDecodeError, KeyError, TypeError):
                self._error(HTTPStatus.BAD_REQUEST, 'body must be {"stage": ..., "approver": ...}')
                return
            try:
                out = self.state.approve(m.group(1), stage, approver)
            except LookupError as e:
                self._error(HTTPStatus.NOT_FOUND, str(e))
                return
            self.state.trigger(m.group(1))
            self._send(HTTPStatus.OK, out)
            return
        self._error(HTTPStatus.NOT_FOUND, "no such endpoint")



def _same(given: str, token: str) -> bool:
    """Constant-time comparison that also copes with non-ASCII header values (never a 500)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode("utf-8"))


class ApiServer:
    def __init__(self, listen: str, state: ApiState):
        host, _, port = listen.rpartition(":")
        self.httpd = ThreadingHTTPServer((host or "127.0.0.1", int(port)), make_handler(state))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="pipectl-api", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
