"""What a controller serves on its API port while another instance leads (a standby).

``controller run`` starts this before it competes for leadership, so a second replica answers its
probes at once: ``GET /healthz`` 200 (the process is alive), ``GET /readyz`` 503 (it serves
nothing; the Service sends callers to the leader), and every other request 503 with the API's error
body and ``Retry-After``. It opens no state store, reads no git and acts on nothing, so a standby
cannot apply, approve or roll back. Once it leads, the full API (``controller.api.server``) takes
the port over.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from controller.api.limits import error_body

__all__ = ["NOT_LEADER", "create_standby_app"]

NOT_LEADER = "this controller is a standby; another instance leads and serves the API"


def create_standby_app() -> FastAPI:
    app = FastAPI(title="pipectl (standby)", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        return JSONResponse({"ok": True, "leader": False})

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        return JSONResponse({"ready": False, "leader": False}, 503)

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    def elsewhere(path: str, request: Request) -> JSONResponse:
        return JSONResponse(error_body(503, NOT_LEADER, "NotLeader"), 503, headers={"Retry-After": "5"})

    return app
