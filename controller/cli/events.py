"""``pipectl events [RELEASE]``: the state store's recent events (Normal/Warning, reason, message),
oldest first as ``kubectl events`` prints them; every release's when no release is named.

Through the API (``--server`` or the context) each release shows its last 20 events; from the
store (``--state``), its last ``--limit``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import typer

from controller.cli.options import SERVER_OPT, STATE_OPT, complete_release, fail
from controller.cli.output import output_option, parse_output, render


def _events(state: str, server: str | None, names: list[str], limit: int) -> list[dict[str, Any]]:
    from controller.cli.client import use_server

    url = use_server(server, state)
    out: list[dict[str, Any]] = []
    if url:
        from controller.cli.client import api_get, release_path

        for n in names:
            out += [{**e, "release": n} for e in api_get(url, release_path(n)).get("events", [])]
    else:
        from controller.store.db import Store

        store = Store(state)
        for n in names:
            out += store.recent_events(n, limit=limit)
    for e in out:
        if isinstance(e.get("ts"), datetime):
            e["ts"] = e["ts"].isoformat()
    out.sort(key=lambda e: (str(e.get("ts")), e.get("id") or 0))
    return out[-limit:]


def _table(events: list[dict[str, Any]]) -> str:
    from controller.cli.render import age, plain_table

    rows = []
    for e in events:
        obj = f"pipelinerelease/{e.get('release')}" + (f" ({e['stage']})" if e.get("stage") else "")
        message = " ".join(str(e.get("message") or "").split())
        rows.append([age(e.get("ts")), e.get("type") or "-", e.get("reason") or "-", obj, message[:160]])
    return plain_table(["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], rows)


def events(
    release: str | None = typer.Argument(
        None, help="Release name (default: every release).", autocompletion=complete_release
    ),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000, help="How many of the newest to show."),
    types: str = typer.Option("", "--types", help="Only these types, e.g. Warning (comma-separated)."),
    output: str = output_option("table", "json", "yaml", "jsonpath", "custom-columns"),
    state: str = STATE_OPT,
    server: str | None = SERVER_OPT,
) -> None:
    """Recent events of a release, or of every release (oldest first)."""
    from controller.cli.get import statuses

    out = parse_output(output)
    known = statuses(state, server)
    if release and release not in known:
        fail(f'release "{release}" not found')
    got = _events(state, server, [release] if release else sorted(known), limit)
    wanted = {t.strip().lower() for t in types.split(",") if t.strip()}
    if wanted:
        got = [e for e in got if str(e.get("type", "")).lower() in wanted]
    if not got and not out.structured:
        typer.echo("No events found.", err=True)
        return
    typer.echo(render({"kind": "EventList", "items": got}, out, table=lambda: _table(got)))
