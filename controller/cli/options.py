"""Options the newer verbs share (their defaults come from the context: ``controller.cli.config``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import typer

DEFAULT_STATE = "sqlite:///.pipectl/state.db"
STATE_OPT = typer.Option(
    DEFAULT_STATE, "--state", envvar="PIPECTL_STATE", help="State store (SQLAlchemy URL)."
)
SERVER_OPT = typer.Option(
    None, "--server", envvar="PIPECTL_SERVER", help="Controller API (e.g. http://127.0.0.1:8700)."
)
REPO_OPT = typer.Option(
    ".", "--repo", "-r", envvar="PIPECTL_REPO", help="Manifest repo: a local dir or git URL."
)
BRANCH_OPT = typer.Option("main", "--branch", help="Git branch to follow.")


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def complete_release(incomplete: str) -> list[str]:
    """Shell completion of release names from the state store on this machine ($PIPECTL_STATE, the
    context's or the default); never the network, never an error."""
    try:
        from controller.cli.config import active

        ctx = active()
        state = os.environ.get("PIPECTL_STATE") or (ctx.state if ctx and ctx.state else DEFAULT_STATE)
        prefix = "sqlite:///"
        if not state.startswith(prefix) or not Path(state.removeprefix(prefix)).exists():
            return []
        from controller.store.db import Store

        return sorted(n for n in Store(state).list_statuses() if n.startswith(incomplete))
    except Exception:  # a completion never breaks the shell
        return []


RELEASE_ARG = typer.Argument(..., help="Release name.", autocompletion=complete_release)
