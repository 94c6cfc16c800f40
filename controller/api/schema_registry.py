"""pipectl's schema registry over the Confluent Schema Registry REST API, under ``/schema-registry``.

Standard clients take ``http://CONTROLLER/schema-registry`` as their registry URL (with the
caller's API token: ``bearer.auth.credentials.source: STATIC_TOKEN``, ``bearer.auth.token``; the
client also insists on a ``bearer.auth.logical.cluster``, which is ignored). Read-only: git is the
writer (``controller.rollout.schema_registry`` folds the repo's history into subjects, versions and
ids; ``controller.engine.registry_sync`` keeps it at the controller's commit).

- ``GET /subjects``, ``GET /subjects/S/versions``, ``GET /subjects/S/versions/V`` (V a number,
  ``latest`` or ``-1``), ``GET /subjects/S/versions/V/schema``
- ``GET /schemas/ids/ID``, ``GET /schemas/ids/ID/versions``, ``GET /schemas/ids/ID/subjects``,
  ``GET /schemas/types``
- ``POST /subjects/S`` — which version of S a schema is (lookup)
- ``POST /compatibility/subjects/S/versions/V`` and ``…/versions`` — the schemaCompatibility
  gate's own check (``controller.rollout.schema_compat``) under the subject's declared level
- ``GET /config``, ``GET /config/S`` — ``{"compatibilityLevel": …}``; ``GET /mode`` — ``READONLY``
- ``POST /subjects/S/versions`` (registration) and any ``PUT``/``DELETE`` — 405, because git is
  the writer

Answers are ``application/vnd.schemaregistry.v1+json``; errors carry Confluent's
``{"error_code", "message"}`` (plus this API's ``error``/``code``). Any principal may read (401
without one); 501 on an API server without a controller. The controller's job token
(``new_job_token``, ``ApiState.registry_token``) is accepted here and nowhere else: ``controller
run`` makes one at start, keeps it in memory only, and hands it to the streaming jobs it starts in
their environment (``controller.wiring.Wiring.job_env``), so a job reads writer schemas without
holding a principal that could approve or roll back anything. These routes are not in
``/openapi.json``: Confluent's API reference describes them.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from controller.api.auth import bearer
from controller.model.manifest import SchemaFormat
from controller.rollout import schema_registry as sr

if TYPE_CHECKING:
    from controller.api.server import ApiState

PREFIX = "/schema-registry"
JOB_TOKEN_PREFIX = "pcr_"  # noqa: S105 - a prefix, not a secret
MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"
READ_ONLY = (
    "pipectl's schema registry is read-only: git is the writer. Declare the schema in the release "
    "manifest (spec.schemas[], referenced by spec.topics[].valueSchema or keySchema) and commit it; "
    "pipectl assigns its version and id from the git history"
)


WRITES = (
    "/config",
    "/config/{subject}",
    "/mode",
    "/mode/{subject}",
    "/subjects/{subject}",
    "/subjects/{subject}/versions/{version}",
)
"""Paths of Confluent's writes besides registration (``PUT`` a level or mode, ``DELETE`` a subject
or version): refused like registration."""


class SrResponse(JSONResponse):
    media_type = MEDIA_TYPE


def _error(status: int, code: int, message: str) -> SrResponse:
    body = {"error_code": code, "message": message, "error": message, "code": status}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 405:
        headers = {"Allow": "GET"}
    return SrResponse(body, status, headers=headers)


def _schema_body(entry: sr.SchemaEntry) -> dict[str, Any]:
    out: dict[str, Any] = {"schema": entry.text}
    if entry.format is not SchemaFormat.AVRO:
        out["schemaType"] = entry.format.value.upper()
    return out


def _version_body(reg: sr.Registry, subject: str, v: sr.RegisteredVersion) -> dict[str, Any]:
    entry = sr.schema(reg, v.id)
    return {"subject": subject, "version": v.version, "id": v.id, **_schema_body(entry)}


def _schema_id(text: str) -> int:
    if not text.isdigit() or len(text) > 10:
        raise sr.RegistryError(404, 40403, f"Schema {text} not found")
    return int(text)


async def _candidate(request: Request) -> tuple[SchemaFormat, str]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
        raise sr.RegistryError(
            422, 42201, "Invalid schema: the body must be a JSON object with a 'schema' string"
        )
    if body.get("references"):
        raise sr.RegistryError(422, 42201, "Invalid schema: schema references are not served")
    kind = body.get("schemaType")
    return sr.schema_format(kind if isinstance(kind, str) else None), body["schema"]


def new_job_token() -> str:
    """A fresh read-only registry token for the jobs a controller starts (never stored)."""
    return JOB_TOKEN_PREFIX + secrets.token_urlsafe(32)


def job_token_matches(given: str | None, token: str | None) -> bool:
    """Whether a request's bearer credential is the controller's job token (constant time)."""
    if not given or not token or not given.startswith(JOB_TOKEN_PREFIX):
        return False
    return hmac.compare_digest(given.encode(), token.encode())


def register(app: FastAPI, state: ApiState) -> None:
    from controller.api.server import _principal

    def registry(request: Request) -> sr.Registry:
        job = job_token_matches(bearer(request.headers), state.registry_token)
        if not job and _principal(state, request) is None:
            raise sr.RegistryError(
                401, 40101, "a valid API token is required (Authorization: Bearer <token>)"
            )
        if state.schema_registry is None:
            raise sr.RegistryError(501, 50101, "this API server does not run a controller")
        return state.schema_registry()

    @app.exception_handler(sr.RegistryError)
    async def refused(_r: Request, e: sr.RegistryError) -> SrResponse:
        return _error(e.status, e.code, e.message)

    _reads(app, registry)
    _checks(app, registry)


HIDDEN: dict[str, Any] = {"include_in_schema": False, "response_class": SrResponse}


def _reads(app: FastAPI, registry: Callable[[Request], sr.Registry]) -> None:
    get, hidden = app.get, HIDDEN

    @get(PREFIX + "/subjects", **hidden)
    def subjects(request: Request) -> list[str]:
        return sorted(registry(request).subjects)

    @get(PREFIX + "/subjects/{subject}/versions", **hidden)
    def versions(subject: str, request: Request) -> list[int]:
        return [v.version for v in sr.subject(registry(request), subject).versions]

    @get(PREFIX + "/subjects/{subject}/versions/{version}", **hidden)
    def version(subject: str, version: str, request: Request) -> dict[str, Any]:
        reg = registry(request)
        return _version_body(reg, subject, sr.version(reg, subject, version))

    @get(PREFIX + "/subjects/{subject}/versions/{version}/schema", include_in_schema=False)
    def version_schema(subject: str, version: str, request: Request) -> Response:
        reg = registry(request)
        # the schema itself, as it is in git, not wrapped in a JSON object
        return Response(sr.schema(reg, sr.version(reg, subject, version).id).text, media_type=MEDIA_TYPE)

    @get(PREFIX + "/schemas/ids/{schema_id}", **hidden)
    def by_id(schema_id: str, request: Request) -> dict[str, Any]:
        return _schema_body(sr.schema(registry(request), _schema_id(schema_id)))

    @get(PREFIX + "/schemas/ids/{schema_id}/versions", **hidden)
    def id_versions(schema_id: str, request: Request) -> list[dict[str, Any]]:
        found = sr.id_versions(registry(request), _schema_id(schema_id))
        return [{"subject": s, "version": v} for s, v in found]

    @get(PREFIX + "/schemas/ids/{schema_id}/subjects", **hidden)
    def id_subjects(schema_id: str, request: Request) -> list[str]:
        return sorted({s for s, _ in sr.id_versions(registry(request), _schema_id(schema_id))})

    @get(PREFIX + "/schemas/types", **hidden)
    def types(request: Request) -> list[str]:
        registry(request)
        return ["AVRO", "JSON"]


def _checks(app: FastAPI, registry: Callable[[Request], sr.Registry]) -> None:
    get, post, hidden = app.get, app.post, HIDDEN

    @post(PREFIX + "/subjects/{subject}", **hidden)
    async def lookup(subject: str, request: Request) -> dict[str, Any]:
        reg = registry(request)
        fmt, text = await _candidate(request)
        return _version_body(reg, subject, sr.lookup(reg, subject, fmt, text))

    @post(PREFIX + "/subjects/{subject}/versions", **hidden)
    def register_schema(subject: str, request: Request) -> SrResponse:
        registry(request)
        return _error(405, 405, READ_ONLY)

    async def compatibility(subject: str, ref: str | None, request: Request) -> dict[str, Any]:
        reg = registry(request)
        fmt, text = await _candidate(request)
        found = sr.incompatibilities(reg, subject, ref, fmt, text)
        out: dict[str, Any] = {"is_compatible": not found}
        if request.query_params.get("verbose", "").lower() == "true":
            out["messages"] = found
        return out

    @post(PREFIX + "/compatibility/subjects/{subject}/versions/{version}", **hidden)
    async def compatible(subject: str, version: str, request: Request) -> dict[str, Any]:
        return await compatibility(subject, version, request)

    @post(PREFIX + "/compatibility/subjects/{subject}/versions", **hidden)
    async def compatible_all(subject: str, request: Request) -> dict[str, Any]:
        return await compatibility(subject, None, request)

    @get(PREFIX + "/config", **hidden)
    def config(request: Request) -> dict[str, str]:
        return {"compatibilityLevel": sr.compatibility_level(registry(request), None).value}

    @get(PREFIX + "/config/{subject}", **hidden)
    def subject_config(subject: str, request: Request) -> dict[str, str]:
        return {"compatibilityLevel": sr.compatibility_level(registry(request), subject).value}

    @get(PREFIX + "/mode", **hidden)
    def mode(request: Request) -> dict[str, str]:
        registry(request)
        return {"mode": "READONLY"}

    def refuse(request: Request) -> SrResponse:
        registry(request)
        return _error(405, 405, READ_ONLY)

    for path in WRITES:
        app.add_api_route(PREFIX + path, refuse, methods=["PUT", "DELETE"], **hidden)
