"""A small client for the controller's HTTP API (``--server``)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import typer


def api_token() -> str | None:
    tok = os.environ.get("PIPECTL_API_TOKEN")
    if tok:
        return tok
    f = Path(".pipectl") / "api-token"
    return f.read_text().strip() if f.exists() else None


def _request(server: str, path: str, body: dict[str, Any] | None = None) -> Any:
    url = server.rstrip("/") + path
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET")  # noqa: S310
    req.add_header("Content-Type", "application/json")
    tok = api_token()
    if tok:
        req.add_header("Authorization", f"Bearer {tok}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - URL given by the user
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            msg = json.loads(e.read()).get("error", str(e))
        except (json.JSONDecodeError, AttributeError):
            msg = str(e)
        typer.echo(f"error: {msg}", err=True)
        raise typer.Exit(1) from None
    except (urllib.error.URLError, OSError) as e:
        typer.echo(f"error: cannot reach the controller at {server}: {e}", err=True)
        raise typer.Exit(1) from None


def api_get(server: str, path: str) -> Any:
    return _request(server, path)


def api_post(server: str, path: str, body: dict[str, Any]) -> Any:
    return _request(server, path, body)
