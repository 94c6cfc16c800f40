"""Options the newer verbs share (their defaults come from the context: ``controller.cli.config``)."""

from __future__ import annotations

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
