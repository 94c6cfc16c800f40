"""The API's OpenAPI document (``GET /openapi.json``) as the handlers really answer.

FastAPI documents each route's success response and a 422 for request validation. This API
answers a bad request with 400 (``controller.api.server``: invalid bodies; ``controller.api.limits``:
a bad ``Content-Length``) and every error as ``{"error", "code", "reason"}``, so the document drops
the 422s and lists, per operation, the error statuses its code can return:

- every operation: 400 and 413 (``BodyLimit`` runs before any route), 503 (a store outage)
- every operation but ``GET /healthz`` and ``GET /readyz``: 401 (no principal, or for the webhook no
  secret)
- a path with ``{name}``: 404 (unknown release)
- approvals and rollbacks: 403 (not an approver), 409 (not the current version, one in flight)
- destructive approvals and rollbacks: 501 (an API server without a controller, as in unit tests)
- ``GET .../permissions``: 409 (the release is invalid at the controller's commit), 501 (as above)

and the bearer security scheme (per-user tokens; the webhook's secret for ``/hooks/git``).
``tests/integration/test_api_schemathesis.py`` checks the live API against it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

OPEN = {("get", "/healthz"), ("get", "/readyz")}
APPROVALS = {"/approve", "/destructive-approvals", "/rollback"}
NEED_CONTROLLER = ("/destructive-approvals", "/rollback", "/permissions")


class ErrorBody(BaseModel):
    """Every error's body."""

    error: str = Field(description="What is wrong, for a person.")
    code: int = Field(description="The HTTP status.")
    reason: str | None = Field(default=None, description="A named reason, e.g. ReleaseNotFound.")


DESCRIPTIONS = {
    400: "Bad request: invalid body or Content-Length",
    401: "No valid API token (Authorization: Bearer <token>)",
    403: "The principal may not do this at this stage",
    404: "No such release (or request)",
    409: "Conflict: not the current version, one already in flight, or the release is invalid",
    413: "Request body too large",
    501: "This API server does not run a controller",
    503: "A backend or the state store is unavailable; retry later (Retry-After)",
}


def error_statuses(method: str, path: str) -> list[int]:
    """The error statuses an operation can answer (see the module's docstring)."""
    codes = {400, 413, 503}
    if (method, path) not in OPEN:
        codes.add(401)
    if "{name}" in path:
        codes.add(404)
    if any(path.endswith(s) or f"{s}/" in path for s in APPROVALS) and method == "post":
        codes |= {403, 409}
    if path.endswith("/permissions"):
        codes.add(409)
    if any(s in path for s in NEED_CONTROLLER):
        codes.add(501)
    return sorted(codes)


def document(app: FastAPI) -> dict[str, Any]:
    """The document for ``app`` (cached on it, as FastAPI's own ``openapi()`` does)."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas["ErrorBody"] = ErrorBody.model_json_schema()
    doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            for code in error_statuses(method, path):
                if (method, path) in OPEN:  # a 503 here is the health document
                    responses[str(code)] = {"description": "Not healthy or not ready"} if code == 503 else {
                        "description": DESCRIPTIONS[code], "content": {"application/json": {"schema": ref}}}
                    continue
                responses.setdefault(str(code), {
                    "description": DESCRIPTIONS[code], "content": {"application/json": {"schema": ref}}})
            if (method, path) not in OPEN:
                op["security"] = [{"bearer": []}]
    app.openapi_schema = doc
    return doc
