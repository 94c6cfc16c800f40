"""``pipectl version``: the client's version and, when a controller is known (``--server``,
``$PIPECTL_SERVER`` or the context), the controller's (``GET /api/v1/version``). A controller named
by a flag or variable must answer (exit 1 otherwise); the context's may be stopped (a note)."""

from __future__ import annotations

import platform
from typing import Any

import typer

from controller import __version__
from controller.cli.options import SERVER_OPT
from controller.cli.output import output_option, parse_output, render


def version(
    server: str | None = SERVER_OPT,
    client: bool = typer.Option(False, "--client", help="The client's version only."),
    output: str = output_option("table", "json", "yaml"),
) -> None:
    """Print the client and server versions (exit 1 when the server cannot tell)."""
    from controller.cli.client import api_get, reachable
    from controller.cli.config import from_context

    out = parse_output(output)
    info: dict[str, Any] = {"clientVersion": {"version": __version__, "python": platform.python_version()}}
    lines = [f"Client Version: {__version__}"]
    failed = False
    if server and not client and from_context("server") and not reachable(server):
        typer.echo(f"note: no controller answers at {server} (the context's server)", err=True)
    elif server and not client:
        try:
            got = api_get(server, "/api/v1/version")
        except typer.Exit:  # api_get said why on stderr
            failed = True
        else:
            info["serverVersion"] = {**got, "server": server}
            lines.append(f"Server Version: {got.get('version')} ({got.get('apiVersion')}) at {server}")
    typer.echo(render(info, out, table=lambda: "\n".join(lines)))
    if failed:
        raise typer.Exit(1)
