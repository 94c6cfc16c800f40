"""Request body limits for the API, enforced before any handler reads a body.

``BodyLimit`` is plain ASGI middleware: a request whose ``Content-Length`` is not a decimal
number (negative, garbage, repeated with different values) gets 400, one larger than the limit
413 — both before a byte of the body is read. A body without a length (chunked) is counted as it
arrives and refused with 413 once it passes the limit.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 1024 * 1024


def error_body(status: int, message: str, reason: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"error": message, "code": status}
    if reason:
        out["reason"] = reason
    return out


class _TooLarge(HTTPException):
    """Raised from ``receive`` once a body passes the limit; an HTTPException, so FastAPI's body
    parsing lets it through and the app's handler answers 413."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body larger than {limit} bytes")


def content_length(headers: list[tuple[bytes, bytes]]) -> tuple[int | None, str | None]:
    """(length, None), (None, None) when absent, or (None, why) when it is not acceptable."""
    values = {v.strip() for k, v in headers if k.lower() == b"content-length"}
    if not values:
        return None, None
    if len(values) > 1:
        return None, "conflicting Content-Length headers"
    raw = values.pop()
    if not raw.isdigit() or len(raw) > 64:
        return None, "invalid Content-Length"
    return int(raw), None


class BodyLimit:
    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY):
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        n, why = content_length(scope.get("headers", []))
        if why is not None:
            await JSONResponse(error_body(400, why, "BadRequest"), 400)(scope, receive, send)
            return
        if n is not None and n > self.max_body:
            await self._too_large(scope, receive, send)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge(self.max_body)
            return msg

        async def tracked(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        msg = f"request body larger than {self.max_body} bytes"
        await JSONResponse(error_body(413, msg, "TooLarge"), 413)(scope, receive, send)
