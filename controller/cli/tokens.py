"""``pipectl token create|list|revoke``: API principals, managed by an operator with the state store.

``create`` prints the new token once (only its sha256 is stored); give it to the person, who sets
``PIPECTL_TOKEN``. ``list`` never shows a token. ``revoke`` takes effect on the next request.
"""

from __future__ import annotations

import getpass
import json
from typing import TYPE_CHECKING

import typer

from controller.cli.output import output_option

if TYPE_CHECKING:
    from controller.store.tokens import TokenStore

app = typer.Typer(
    help="API tokens: who may read and approve through the controller's API.", no_args_is_help=True
)

STATE = typer.Option(
    "sqlite:///.pipectl/state.db", "--state", envvar="PIPECTL_STATE", help="State store (SQLAlchemy URL)."
)


def _tokens(state: str) -> TokenStore:
    from controller.store.db import Store
    from controller.store.tokens import TokenStore

    return TokenStore(Store(state))


@app.command("create")
def create(
    user: str = typer.Option(..., "--user", help="The principal's user name (what approvers list)."),
    groups: str = typer.Option("", "--groups", help="Comma-separated groups, e.g. ops,sre."),
    state: str = STATE,
) -> None:
    """Create a token for a user and print it once (it is stored hashed and cannot be shown again)."""
    try:
        tid, token = _tokens(state).create(
            user, [g.strip() for g in groups.split(",") if g.strip()], created_by=getpass.getuser()
        )
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"created {tid} for {user}; the token (shown once):", err=True)
    typer.echo(token)


@app.command("list")
def list_tokens(
    output: str = output_option("table", "json"),
    state: str = STATE,
) -> None:
    """Every token's id, user, groups and state (never the token)."""
    from controller.cli.render import plain_table

    rows = _tokens(state).list()
    if output == "json":
        typer.echo(json.dumps(rows, default=str, indent=2))
        return
    table = [
        [
            r["id"],
            r["user"],
            ",".join(r["groups"]) or "-",
            str(r["created_at"])[:19],
            r.get("created_by") or "-",
            f"revoked {str(r['revoked_at'])[:19]}" if r["revoked_at"] else "active",
        ]
        for r in rows
    ]
    typer.echo(plain_table(["ID", "USER", "GROUPS", "CREATED", "BY", "STATE"], table))


@app.command("revoke")
def revoke(token_id: str = typer.Argument(..., help="Token id (tok_…)."), state: str = STATE) -> None:
    """Revoke a token; requests with it are refused from now on."""
    if not _tokens(state).revoke(token_id):
        typer.echo(f"error: no active token {token_id!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {token_id}")
