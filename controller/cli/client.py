"""A small client for the controller's HTTP API (``--server``).

The caller's API token comes from ``$PIPECTL_TOKEN``, else from the context in use
(``controller.cli.config``: its ``token`` or ``token-file``), which also names the server used when
``--server``/``$PIPECTL_SERVER`` is not given. Tokens are made by ``pipectl token create`` and sent
as ``Authorization: Bearer``; never printed.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import typer

from controller.cli.config import ConfigError, active, explicit, from_context


def context(with_token: bool = False) -> dict[str, str]:
    """The context in use: its ``server`` (and ``token`` when asked: a token-file is read only
    then, so an unreadable or empty one fails the verbs that send it, not local reads)."""
    try:
        ctx = active()
        token = ctx.api_token() if ctx and with_token else None
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    if ctx is None:
        return {}
    return {k: v for k, v in (("server", ctx.server), ("token", token)) if v}


def api_token() -> str | None:
    return os.environ.get("PIPECTL_TOKEN") or context(with_token=True).get("token")


def server_or_context(server: str | None) -> str | None:
    return server or context().get("server")


def reachable(server: str, timeout: float = 2.0) -> bool:
    """Does anything answer ``GET /healthz`` at ``server`` (no token needed)?"""
    try:
        with urllib.request.urlopen(server.rstrip("/") + "/healthz", timeout=timeout):  # noqa: S310
            return True
    except urllib.error.HTTPError:
        return True  # 503: a controller that is not ready still answers
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _local_store(state: str) -> bool:
    prefix = "sqlite:///"
    return state.startswith(prefix) and Path(state.removeprefix(prefix)).exists()


def use_server(server: str | None, state: str) -> str | None:
    """The API a reading verb asks, or None to read the state store ``state``.

    A ``--server`` flag or ``$PIPECTL_SERVER`` always wins. A context's server gives way to an
    explicit ``--state``/``$PIPECTL_STATE``, and to the context's own state store on this machine
    when the controller does not answer (say, after ``make demo`` stopped it; a note says so)."""
    if not server:
        return None
    if explicit("server"):
        return server
    if explicit("state"):
        return None
    if (server, state) not in _decided:  # one probe per command, however many reads it makes
        _decided[(server, state)] = server
        if from_context("server") and _local_store(state) and not reachable(server):
            typer.echo(f"note: no controller answers at {server}; reading the state store {state}", err=True)
            _decided[(server, state)] = None
    return _decided[(server, state)]


_decided: dict[tuple[str, str], str | None] = {}


def _request(server: str, path: str, body: dict[str, Any] | None = None) -> Any:
    url = server.rstrip("/") + path
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET")  # noqa: S310
    req.add_header("Content-Type", "application/json")
    tok = api_token()
    if not tok:
        typer.echo(
            "error: no API token: set PIPECTL_TOKEN or the context's token-file "
            "(`pipectl token create --user NAME` prints one)",
            err=True,
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
