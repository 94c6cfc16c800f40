"""The controller's HTTP API: FastAPI on uvicorn, in a background thread of the controller process.

- ``GET /healthz`` — open; only ``ok`` and ``leader`` unless the caller is a principal (then the
  commit and the last error too)
- ``GET /readyz`` — open; 200 when this instance leads and is ok, else 503 (a standby serves
  ``controller.api.standby`` instead: /healthz 200, /readyz 503)
- ``GET /metrics`` (Prometheus text), ``GET /api/v1/releases``, ``GET /api/v1/releases/NAME``,
  ``GET /api/v1/releases/NAME/history`` — any principal
- ``POST /api/v1/releases/NAME/approve`` — ``{"stage": "prod", "version": "1.0.0"[, "revision":
  "sha256:…"]}``; the approver recorded is the authenticated principal
  (``controller.audit.approvals``: 404 unknown release, 400 unknown stage, 403 not an approver,
  409 not the current version)
- ``POST /hooks/git`` — wake the controller (generic, GitHub and GitLab push payloads); the webhook
  secret only (``controller.api.auth``)
- ``GET /api/v1/version``, ``POST /api/v1/releases/NAME/suspend|resume`` — ``controller.api.extras``
- ``POST /api/v1/releases/NAME/destructive-approvals``, ``POST /api/v1/releases/NAME/rollback``,
  ``GET /api/v1/releases/NAME/rollback/ID`` — ``controller.api.operations``
- ``GET /`` (the release board), ``GET /api/v1/stream`` (server-sent events),
  ``GET /api/v1/releases/NAME/audit|lineage|permissions`` — ``controller.api.board``
- ``/schema-registry/…`` — the schemas from git over the Confluent Schema Registry REST API,
  read-only (``controller.api.schema_registry``)
- ``GET /openapi.json`` — the API's description, error statuses included (``controller.api.openapi``)

Principals are per-user tokens (``pipectl token create``) or a trusted proxy's identity header;
there are no open reads, from loopback or elsewhere (``/healthz`` and ``/openapi.json`` aside).
Errors are JSON ``{"error": message, "code": status, "reason": name}``. Bodies are limited
(``BodyLimit``: a bad, negative or too large ``Content-Length`` is refused before the body is read).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from controller.api.auth import TrustedProxy, principal_of, webhook_authorized
from controller.api.limits import MAX_BODY, BodyLimit, error_body
from controller.api.openapi import document
from controller.api.operations import Operations
from controller.api.operations import register as register_operations
from controller.api.wire import JsonH11Protocol
from controller.audit.approvals import ApprovalRefused, ApprovalRequest
from controller.model.errors import ErrorClass, error_class
from controller.obs.logging import redact
from controller.rollout.schema_registry import Registry
from controller.source.validate import RepoSnapshot
from controller.store.db import Store
from controller.store.tokens import Principal, TokenStore

log = structlog.get_logger(__name__)

_NAME = re.compile(r"\A[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
PUBLIC_HEALTH = ("ok", "leader")
API_VERSION = "pipectl.dev/v1alpha1"


@dataclass
class ApiState:
    """What the handlers need: the store, the principals, the webhook secret, and hooks into the
    running controller (``controller.cli.run`` wires them)."""

    store: Store
    tokens: TokenStore
    webhook_secret: str
    trigger: Callable[[str | None], None]
    health: Callable[[], dict[str, Any]]
    metrics: Callable[[], bytes]
    approve: Callable[[ApprovalRequest, Principal], dict[str, Any]]
    """Check and record an approval; raises ``ApprovalRefused``."""
    trusted: TrustedProxy | None = None
    max_body: int = MAX_BODY
    operations: Operations | None = None
    """Destructive approvals and rollbacks (``controller.api.operations``)."""
    snapshot: Callable[[], RepoSnapshot] | None = None
    """The repo at the commit the controller works from (what approvals are checked against):
    ``GET .../permissions`` asks ``controller.audit.approvals.permission`` over it."""
    schema_registry: Callable[[], Registry] | None = None
    """The schema registry at the controller's commit (``controller.api.schema_registry``)."""
    registry_token: str | None = None
    """The controller's job token: reads the schema registry, nothing else."""


class ApproveBody(BaseModel):
    """What the person looked at: the version (and optionally the revision digest) to approve."""

    model_config = ConfigDict(extra="forbid")

    stage: str = Field(min_length=1, max_length=64, description="Stage (an Environment name).")
    version: str = Field(min_length=1, max_length=64, description="The release's current version.")
    revision: str | None = Field(default=None, max_length=80, description="Its revision digest, sha256:….")


class ApiError(Exception):
    def __init__(self, status: int, message: str, reason: str = ""):
        super().__init__(message)
        self.status, self.message, self.reason = status, message, reason


def _principal(state: ApiState, request: Request) -> Principal | None:
    peer = request.client.host if request.client else None
    return principal_of(request.headers, peer, state.tokens, state.trusted)


def _require(state: ApiState, request: Request) -> Principal:
    who = _principal(state, request)
    if who is None:
        raise ApiError(401, "a valid API token is required (Authorization: Bearer <token>)", "Unauthorized")
    return who


def _release_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ApiError(404, f"release {name!r} not found", "ReleaseNotFound")
    return name


def create_app(state: ApiState) -> FastAPI:
    app = FastAPI(
        title="pipectl", version="v1alpha1", docs_url=None, redoc_url=None, openapi_url="/openapi.json"
    )
    _errors(app)
    _reads(app, state)
    _writes(app, state)
    from controller.api.extras import register  # version, suspend, resume

    register(app, state)
    register_operations(app, state)  # destructive approvals, rollbacks
    from controller.api.board import register as register_board  # the board, its stream and reads

    register_board(app, state)
    from controller.api.schema_registry import register as register_registry  # Confluent's REST API

    register_registry(app, state)
    app.add_middleware(BodyLimit, max_body=state.max_body)
    app.openapi = lambda: document(app)  # type: ignore[method-assign]  # error statuses, bearer
    return app


def _errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_r: Request, e: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
        return JSONResponse(error_body(e.status, e.message, e.reason), e.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_r: Request, e: StarletteHTTPException) -> JSONResponse:
        message = "no such endpoint" if e.status_code == 404 else str(e.detail)
        return JSONResponse(error_body(e.status_code, message), e.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(_r: Request, e: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(x) for x in err['loc'] if x != 'body') or 'body'}: {err['msg']}"
                 for err in e.errors()]
        return JSONResponse(error_body(400, "invalid request: " + "; ".join(parts), "BadRequest"), 400)

    @app.exception_handler(Exception)
    async def crashed(request: Request, e: Exception) -> JSONResponse:  # a bug answers 500, JSON
        if error_class(e) is ErrorClass.TRANSIENT:  # e.g. the state store is down: not a bug, retry
            driver = type(e).__module__.split(".")[0]
            what = "state store" if driver in ("sqlalchemy", "psycopg", "sqlite3") else "backend"
            log.warning("api handler: unavailable", path=request.url.path, error=repr(e)[:300])
            message = f"{what} unavailable ({type(e).__name__}); retry later"
            body = error_body(503, message, "BackendUnavailable")
            return JSONResponse(body, 503, headers={"Retry-After": "10"})
        log.error("api handler failed", path=request.url.path, error=repr(e))
        return JSONResponse(error_body(500, "internal error"), 500)


def _reads(app: FastAPI, state: ApiState) -> None:
    @app.get("/healthz", summary="Liveness: ok and leader (details for principals)")
    def healthz(request: Request) -> JSONResponse:
        h = redact(state.health())  # the last error may quote a git URL's or a backend's secret
        if _principal(state, request) is None:
            h = {k: h.get(k) for k in PUBLIC_HEALTH}
        return JSONResponse(h, 200 if h.get("ok") else 503)

    @app.get("/readyz", summary="Readiness: this instance leads and is ok")
    def readyz() -> JSONResponse:
        h = state.health()
        ready = bool(h.get("ok") and h.get("leader"))
        return JSONResponse({"ready": ready, "leader": bool(h.get("leader"))}, 200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def metrics(request: Request) -> Response:
        _require(state, request)
        return Response(state.metrics(), media_type="text/plain; version=0.0.4")

    @app.get("/api/v1/releases", summary="Every release's status")
    def releases(request: Request) -> dict[str, Any]:
        _require(state, request)
        items = [{"name": n, "status": s} for n, s in state.store.list_statuses().items()]
        return {"apiVersion": API_VERSION, "kind": "PipelineReleaseList", "items": items}

    @app.get("/api/v1/releases/{name}", summary="One release: status and recent events")
    def release(name: str, request: Request) -> dict[str, Any]:
        _require(state, request)
        status = state.store.get_status(_release_name(name))
        if status is None:
            raise ApiError(404, f"release {name!r} not found", "ReleaseNotFound")
        return {
            "apiVersion": API_VERSION,
            "kind": "PipelineRelease",
            "metadata": {"name": name},
            "status": status,
            "events": _jsonable(state.store.recent_events(name)),
        }

    @app.get("/api/v1/releases/{name}/history", summary="One release's runs, newest first")
    def history(name: str, request: Request) -> dict[str, Any]:
        _require(state, request)
        if state.store.get_status(_release_name(name)) is None:
            raise ApiError(404, f"release {name!r} not found", "ReleaseNotFound")
        return {"name": name, "history": _jsonable(state.store.history(name))}


def _writes(app: FastAPI, state: ApiState) -> None:
    @app.post("/hooks/git", status_code=202, summary="Git push webhook (webhook secret)")
    async def hook(request: Request) -> JSONResponse:
        body = await request.body()
        if not webhook_authorized(request.headers, body, state.webhook_secret):
            raise ApiError(401, "the webhook secret is required", "Unauthorized")
        ref = _ref(body)
        state.trigger(None)
        source = request.headers.get("x-github-event") or request.headers.get("x-gitlab-event") or "generic"
        log.info("git webhook", ref=ref, source=source)
        return JSONResponse({"accepted": True, "ref": ref, "at": datetime.now(UTC).isoformat()}, 202)

    @app.post("/api/v1/releases/{name}/approve", summary="Approve a version for a stage (as the caller)")
    def approve(name: str, body: ApproveBody, request: Request) -> dict[str, Any]:
        who = _require(state, request)
        req = ApprovalRequest(_release_name(name), body.stage, body.version, body.revision)
        try:
            out = state.approve(req, who)
        except ApprovalRefused as e:
            raise ApiError(e.status, e.message, e.reason) from None
        log.info("approval", release=name, stage=body.stage, version=body.version, principal=who.describe())
        state.trigger(name)
        return out


def _ref(body: bytes) -> str | None:
    import json

    try:
        payload = json.loads(body) if body else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    ref = payload.get("ref") if isinstance(payload, dict) else None
    return ref if isinstance(ref, str) else None


def _jsonable(rows: Any) -> Any:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(rows)


# --- the server ----------------------------------------------------------------------------------


class _ThreadServer(uvicorn.Server):
    """uvicorn without signal handlers: the controller process owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        pass


def _bind(listen: str) -> socket.socket:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class ApiServer:
    """The API on ``listen`` (``HOST:PORT``; port 0 picks a free one), served by uvicorn (h11)
    in a daemon thread. Keep-alive connections idle for ``keep_alive`` seconds are closed."""

    def __init__(self, listen: str, state: ApiState | None, keep_alive: int = 5, *,
                 app: FastAPI | None = None):
        """Serve ``create_app(state)``, or ``app`` when given (the standby's)."""
        if app is None:
            if state is None:
                raise ValueError("ApiServer needs an ApiState or an app")
            app = create_app(state)
        self.sock = _bind(listen)
        config = uvicorn.Config(
            app,
            http=JsonH11Protocol,  # a request h11 refuses gets the JSON error body
            loop="asyncio",
            lifespan="off",
            log_config=None,
            access_log=False,
            proxy_headers=False,  # the peer address is the socket's (trusted proxies: api.auth)
            server_header=False,
            timeout_keep_alive=keep_alive,
            timeout_graceful_shutdown=5,
            limit_concurrency=128,
            h11_max_incomplete_event_size=64 * 1024,
        )
        self.server = _ThreadServer(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="pipectl-api", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout / 0.02)):
            if self.server.started or not self.thread.is_alive():
                break
            deadline.wait(0.02)
        if not self.server.started:
            raise RuntimeError(f"the API did not start on {self.address[0]}:{self.address[1]}")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
