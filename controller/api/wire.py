"""uvicorn's HTTP/1.1 protocol (h11) with a clear JSON 400 for requests h11 cannot parse.

h11 refuses a malformed request before any ASGI code runs — a negative, signed, non-decimal or
absurdly long ``Content-Length``, a bad header line — and uvicorn then answers a bare text/plain
"Invalid HTTP request received.". This protocol answers the API's error body instead, with h11's
reason: ``{"error": "invalid HTTP request: bad Content-Length", "code": 400, "reason":
"BadRequest"}``, and closes the connection, as uvicorn does.
"""

from __future__ import annotations

import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from controller.api.limits import error_body


class JsonH11Protocol(H11Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parse_error = ""
        parse = self.conn.next_event

        def next_event() -> Any:
            try:
                return parse()
            except h11.RemoteProtocolError as e:
                self.parse_error = str(e)  # uvicorn catches it and calls send_400_response
                raise

        self.conn.next_event = next_event  # type: ignore[method-assign]

    def send_400_response(self, msg: str) -> None:
        why = self.parse_error or msg
        body = json.dumps(error_body(400, f"invalid HTTP request: {why}", "BadRequest")).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        response = h11.Response(status_code=400, headers=headers, reason=b"Bad Request")
        for event in (response, h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()
