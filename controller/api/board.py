"""The release board's side of the API (registered by ``controller.api.server.create_app``):

- ``GET /`` and ``GET /assets/…`` — the built board (``controller/board``, built into
  ``controller/board/dist`` by ``make install``), served without a token: the files are the same
  for everyone and hold no data; every request for data is an API call with the bearer token the
  page asks for once. A 404 names the command that builds it when it was not built.
- ``GET /api/v1/stream`` — server-sent events (``text/event-stream``) for any principal: an event
  ``releases`` with the same list as ``GET /api/v1/releases`` at once, then again whenever a status
  changes. The controller's workers write statuses into the state store, so each stream reads the
  store once a second (``POLL_SECONDS``); a comment line keeps idle proxies from closing it, and the
  token is checked again every ``RECHECK_SECONDS`` (a revoked token ends the stream). It is left
  out of ``/openapi.json`` (an endless response; OpenAPI 3.0 has no event streams).
- ``GET /api/v1/releases/NAME/audit`` — the release's audit records (the newest ``AUDIT_LIMIT``,
  oldest first), each ``{"seq", "ts", "kind", "record"}`` — the timeline and the gate evidence.
- ``GET /api/v1/releases/NAME/lineage?stage=S`` — the lineage graph of the stage
  (``controller.api.lineage_graph``).
- ``GET /api/v1/releases/NAME/permissions`` — for each stage awaiting approval
  (``controller.audit.approvals.awaiting_approval`` over the stored status), whether the caller may
  approve it now: ``controller.audit.approvals.permission``, which runs the approve endpoint's own
  ``check`` on the version and revision digest at the controller's commit. The page shows an
  approve button only where ``canApprove`` is true, and posts exactly that version and digest.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from starlette.staticfiles import StaticFiles

from controller.api.lineage_graph import lineage_graph
from controller.audit.approvals import ApprovalRefused, awaiting_approval, permission

if TYPE_CHECKING:
    from controller.api.server import ApiState

BOARD_DIR = Path(__file__).resolve().parent.parent / "board" / "dist"
POLL_SECONDS = 1.0
KEEPALIVE_SECONDS = 15.0
RECHECK_SECONDS = 30.0
AUDIT_LIMIT = 500
# The board loads only its own files and talks only to this origin (no inline script; uPlot sets
# element styles from script, which style-src does not govern, and the SVG text uses attributes).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


class StagePermissionOut(BaseModel):
    """May the caller approve this stage now; the version and digest an approval must name."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    stage: str
    version: str = Field(description="The release's version at the controller's commit (to approve).")
    revision: str = Field(description="Its revision digest (sha256:…), bound into the approval.")
    can_approve: bool = Field(description="POST .../approve with this version and revision is accepted.")
    reason: str | None = Field(default=None, description="Why not, as the approve endpoint would say it.")
    refusal: str | None = Field(default=None, description="The refusal's name, e.g. NotAnApprover.")


class PermissionsOut(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    name: str
    principal: str = Field(description="Who asked (the token's user).")
    commit: str | None = Field(description="The commit the answer was computed at (null: nothing awaits).")
    stages: list[StagePermissionOut] = Field(description="One entry per stage awaiting approval.")


def sse(event: str, data: Any) -> bytes:
    """One server-sent event: ``event:`` and a single ``data:`` line of compact JSON."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


def register(app: FastAPI, state: ApiState, board_dir: Path = BOARD_DIR) -> None:
    from controller.api.server import API_VERSION, ApiError, _principal, _release_name, _require

    def releases_list() -> dict[str, Any]:
        items = [{"name": n, "status": s} for n, s in state.store.list_statuses().items()]
        return {"apiVersion": API_VERSION, "kind": "PipelineReleaseList", "items": items}

    async def events(request: Request) -> AsyncIterator[bytes]:
        last, quiet_since, checked = "", time.monotonic(), time.monotonic()
        while True:
            body = await asyncio.to_thread(releases_list)
            text = json.dumps(body, sort_keys=True, default=str)
            now = time.monotonic()
            if text != last:
                last, quiet_since = text, now
                yield sse("releases", body)
            elif now - quiet_since >= KEEPALIVE_SECONDS:
                quiet_since = now
                yield b": keep-alive\n\n"
            if now - checked >= RECHECK_SECONDS:
                checked = now
                if await asyncio.to_thread(_principal, state, request) is None:
                    yield sse("unauthorized", {"error": "the token is no longer valid"})
                    return
            await asyncio.sleep(POLL_SECONDS)

    # Not in /openapi.json: OpenAPI 3.0 cannot describe an event stream, and a client driven by the
    # document (a fuzzer, a generated SDK) would wait on this endless response.
    @app.get("/api/v1/stream", include_in_schema=False)
    def stream(request: Request) -> StreamingResponse:
        _require(state, request)
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(events(request), media_type="text/event-stream", headers=headers)

    def records(name: str) -> list[dict[str, Any]]:
        if state.store.get_status(_release_name(name)) is None:
            raise ApiError(404, f"release {name!r} not found", "ReleaseNotFound")
        rows = state.store.audit_rows(name)[-AUDIT_LIMIT:]
        return [{"seq": r["seq"], "ts": r["ts"], "kind": r["kind"], "record": json.loads(r["record"])}
                for r in rows]

    @app.get("/api/v1/releases/{name}/audit", summary="One release's audit records, oldest first")
    def audit(name: str, request: Request) -> dict[str, Any]:
        _require(state, request)
        from controller.api.server import _jsonable

        return {"name": name, "records": _jsonable(records(name))}

    @app.get("/api/v1/releases/{name}/lineage", summary="The lineage graph of one stage of a release")
    def lineage(
        name: str, request: Request, stage: str = Query(min_length=1, max_length=64)
    ) -> dict[str, Any]:
        _require(state, request)
        return {"name": name, **lineage_graph([r["record"] for r in records(name)], stage)}

    @app.get("/api/v1/releases/{name}/permissions", response_model=PermissionsOut,
             summary="What the caller may approve on a release: each stage awaiting approval")
    def permissions(name: str, request: Request) -> PermissionsOut:
        who = _require(state, request)
        status = state.store.get_status(_release_name(name))
        if status is None:
            raise ApiError(404, f"release {name!r} not found", "ReleaseNotFound")
        if state.snapshot is None:
            raise ApiError(501, "this API server does not run a controller", "NotImplemented")
        waiting = awaiting_approval(status)
        if not waiting:  # no repo snapshot (a checkout) for the common answer on every page refresh
            return PermissionsOut(name=name, principal=who.user, commit=None, stages=[])
        try:
            snap = state.snapshot()
            out = [permission(snap, name, stage, who) for stage in waiting]
        except ApprovalRefused as e:
            raise ApiError(e.status, e.message, e.reason) from None
        stages = [
            StagePermissionOut(stage=p.stage, version=p.version, revision=p.revision,
                               can_approve=p.can_approve, reason=p.reason, refusal=p.refusal)
            for p in out
        ]
        return PermissionsOut(name=name, principal=who.user, commit=snap.commit, stages=stages)

    _static(app, board_dir)


def _static(app: FastAPI, board_dir: Path) -> None:
    from controller.api.server import ApiError

    headers = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
               "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        page = board_dir / "index.html"
        if not page.is_file():
            raise ApiError(404, "the board is not built (make install builds controller/board)", "NotBuilt")
        return FileResponse(page, headers=headers)

    app.mount("/assets", StaticFiles(directory=board_dir / "assets", check_dir=False), name="assets")
