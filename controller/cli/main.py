"""``pipectl`` command line: kubectl-style verbs over the controller.

A verb exists only when it works. Errors are printed for people (``file:line: path: message``);
no Python traceback reaches the terminal for an expected failure.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from controller import __version__

app = typer.Typer(
    name="pipectl",
    help="Declarative release controller for data pipelines (Kafka, Spark, Airflow, Hive, SQL).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pipectl {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """pipectl: ship Kafka topics, Spark jobs, Airflow DAGs, Hive tables and SQL transforms safely."""


@app.command()
def validate(
    paths: list[Path] = typer.Argument(..., help="Repository roots or manifest files."),
) -> None:
    """Validate manifests; exit 0 when valid, 1 otherwise (every problem is listed)."""
    from controller.source.validate import validate_paths

    problems = validate_paths(paths)
    for p in problems:
        typer.echo(str(p), err=True)
    if problems:
        typer.echo(f"{len(problems)} problem(s) found", err=True)
        raise typer.Exit(1)
    typer.echo("valid")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
