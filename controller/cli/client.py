"""A small client for the controller's HTTP API (``--server``).

The caller's API token comes from ``$PIPECTL_TOKEN``, else from the context file
(``$PIPECTL_CONTEXT``, default ``~/.config/pipectl/context.json``: ``{"server": URL, "token": T}``,
mode 0600), which may also name the server used when ``--server``/``$PIPECTL_SERVER`` is not given.
Tokens are made by ``pipectl token create`` and sent as ``Authorization: Bearer``; never printed.
"""

from __future__ import annotations

import json
import os
import stat
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import typer


def context_path() -> Path:
    env = os.environ.get("PIPECTL_CONTEXT")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pipectl" / "context.json"


def context() -> dict[str, str]:
    """The context file's ``server`` and ``token`` (empty when there is no file)."""
    path = context_path()
    if not path.exists():
        return {}
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        typer.echo(f"warning: {path} is readable by others; chmod 600 it", err=True)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        typer.echo(f"error: {path}: {e}", err=True)
        raise typer.Exit(1) from None
    if not isinstance(data, dict):
        return {}
    return {k: str(v) for k, v in data.items() if k in ("server", "token") and v}


def api_token() -> str | None:
    return os.environ.get("PIPECTL_TOKEN") or context().get("token")


def server_or_context(server: str | None) -> str | None:
    return server or context().get("server")


def _request(server: str, path: str, body: dict[str, Any] | None = None) -> Any:
    url = server.rstrip("/") + path
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET")  # noqa: S310
    req.add_header("Content-Type", "application/json")
    tok = api_token()
    if not tok:
        typer.echo(
            "error: no API token: set PIPECTL_TOKEN (`pipectl token create --user NAME` prints one)", err=True
        )
        raise typer.Exit(1)
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


def release_path(name: str, suffix: str = "") -> str:
    return f"/api/v1/releases/{urllib.parse.quote(name, safe='')}{suffix}"


def api_post(server: str, path: str, body: dict[str, Any]) -> Any:
    return _request(server, path, body)
