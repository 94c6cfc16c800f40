"""The API's smaller endpoints for the CLI (registered by ``controller.api.server.create_app``):

- ``GET /api/v1/version`` — the controller's version and API version (any principal)
- ``POST /api/v1/releases/NAME/suspend`` — ``{"reason": "…"}`` (optional): the controller skips
  the release until it is resumed (``controller.store.suspend``); any principal, who is recorded
- ``POST /api/v1/releases/NAME/resume`` — undo it
"""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from controller import __version__
from controller.store.suspend import set_suspended, suspension

if TYPE_CHECKING:
    from controller.api.server import ApiState

log = structlog.get_logger(__name__)


class SuspendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=500, description="Why, for the status message.")


def register(app: FastAPI, state: ApiState) -> None:
    from controller.api.server import API_VERSION, ApiError, _release_name, _require

    @app.get("/api/v1/version", summary="The controller's version")
    def version(request: Request) -> dict[str, Any]:
        _require(state, request)
        return {"version": __version__, "apiVersion": API_VERSION, "python": platform.python_version()}

    def change(name: str, request: Request, suspended: bool, reason: str) -> dict[str, Any]:
        who = _require(state, request)
        if state.store.get_status(_release_name(name)) is None:
            raise ApiError(404, f"release {name!r} not found", "ReleaseNotFound")
        changed = set_suspended(state.store, name, suspended, who.user, reason)
        if changed:
            verb = "suspended" if suspended else "resumed"
            state.store.add_event(name, None, "Normal", "Suspended" if suspended else "Resumed",
                                  f"{verb} by {who.user}" + (f": {reason}" if reason else ""))
            log.info(f"release {verb}", release=name, principal=who.describe())
        state.trigger(name)
        return {"name": name, "suspended": suspension(state.store, name) is not None, "changed": changed}

    @app.post("/api/v1/releases/{name}/suspend", summary="Suspend a release (the controller skips it)")
    def suspend(name: str, request: Request, body: SuspendBody | None = None) -> dict[str, Any]:
        return change(name, request, True, body.reason if body else "")

    @app.post("/api/v1/releases/{name}/resume", summary="Resume a suspended release")
    def resume(name: str, request: Request) -> dict[str, Any]:
        return change(name, request, False, "")
