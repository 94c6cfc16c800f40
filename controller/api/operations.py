"""The API's operations on a stage, each by an approver of that stage (registered by
``controller.api.server.create_app``; ``controller.cli.access`` wires them to the controller):

- ``POST /api/v1/releases/NAME/destructive-approvals`` — ``{"stage": "dev", "actionId":
  "Topic/dev.x/delete"[, "digest": "sha256:…"]}``: approve one destructive action of the stage's
  current plan, bound to its digest (``controller.audit.destructive``); 200 with the approval.
- ``POST /api/v1/releases/NAME/rollback`` — ``{"stage": "prod"[, "toVersion": "1.0.0"]}``: queue a
  manual rollback on the controller (``controller.engine.requests``; the release's worker runs it
  before its next pass); 202 with the request, 409 when one is waiting or running already.
- ``GET /api/v1/releases/NAME/rollback/ID`` — that request: ``queued``, ``running``, ``done`` or
  ``failed``, with the message (any principal).

The principal is the caller's (token or trusted proxy); the stage Environment's ``approvers``
apply as to version approvals (403 otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from controller.audit.approvals import ApprovalRefused
from controller.audit.destructive import DestructiveRequest
from controller.store.tokens import Principal

if TYPE_CHECKING:
    from controller.api.server import ApiState

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RollbackAsk:
    release: str
    stage: str
    to_version: str | None = None


@dataclass
class Operations:
    """Hooks into the running controller; each raises ``ApprovalRefused`` to refuse."""

    approve_destructive: Callable[[DestructiveRequest, Principal], dict[str, Any]]
    rollback: Callable[[RollbackAsk, Principal], dict[str, Any]]
    rollback_status: Callable[[str, str], dict[str, Any] | None]


class DestructiveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: str = Field(min_length=1, max_length=64, description="Stage (an Environment name).")
    action_id: str = Field(
        alias="actionId", min_length=1, max_length=400, description="The id the plan shows."
    )
    digest: str | None = Field(default=None, max_length=80, description="Its digest, sha256:….")


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: str = Field(min_length=1, max_length=64, description="Stage (an Environment name).")
    to_version: str | None = Field(
        default=None, alias="toVersion", max_length=64, description="Default: the last good version."
    )


def register(app: FastAPI, state: ApiState) -> None:
    from controller.api.server import ApiError, _release_name, _require

    def ops() -> Operations:
        if state.operations is None:
            raise ApiError(501, "this API server does not run a controller", "NotImplemented")
        return state.operations

    @app.post(
        "/api/v1/releases/{name}/destructive-approvals",
        summary="Approve one destructive action of a stage's plan (as the caller)",
    )
    def approve_destructive(name: str, body: DestructiveBody, request: Request) -> dict[str, Any]:
        who = _require(state, request)
        req = DestructiveRequest(_release_name(name), body.stage, body.action_id, body.digest)
        try:
            out = ops().approve_destructive(req, who)
        except ApprovalRefused as e:
            raise ApiError(e.status, e.message, e.reason) from None
        log.info("destructive approval", release=name, stage=body.stage, action=body.action_id,
                 principal=who.describe())
        state.trigger(name)
        return out

    @app.post("/api/v1/releases/{name}/rollback", status_code=202, summary="Queue a manual rollback")
    def rollback(name: str, body: RollbackBody, request: Request) -> JSONResponse:
        who = _require(state, request)
        try:
            out = ops().rollback(RollbackAsk(_release_name(name), body.stage, body.to_version), who)
        except ApprovalRefused as e:
            raise ApiError(e.status, e.message, e.reason) from None
        log.info("rollback queued", release=name, stage=body.stage, principal=who.describe())
        return JSONResponse(out, 202)

    @app.get("/api/v1/releases/{name}/rollback/{request_id}", summary="A rollback request's state")
    def rollback_status(name: str, request_id: str, request: Request) -> dict[str, Any]:
        _require(state, request)
        out = ops().rollback_status(_release_name(name), request_id)
        if out is None:
            raise ApiError(404, f"no rollback request {request_id!r} of {name}", "RequestNotFound")
        return out
