"""``pipectl transform``: show a release's compiled SQL transforms for a stage, and run the scheduled
materializations the release's Airflow DAG triggers.

    pipectl transform compile host-metrics --stage dev --repo manifests
    pipectl transform run host-metrics --stage dev --transform telemetry.host_metrics_daily \\
        --partition 2026-01-01 --repo manifests

``run`` compiles the transform from the repository (the desired state) and runs only against the
materialization the controller built from that same SQL (otherwise it fails: the controller must
converge the stage first), so a run never writes a partition with another version's SQL; the SQL
it executes (read back from the serving view) must hash to the digest compiled from git, so whoever
can replace the view cannot choose what pipectl runs:
``incremental`` overwrites the partition (deterministic; re-running the same partition gives the same
rows), ``table`` rebuilds into ``<name>__<digest8>_r<partition>`` and swaps the view (the same
partition again changes nothing), ``view`` has nothing to do. It prints the result as one JSON line
(``partition``, ``rows``, ``relation``, ``digest``) for the DAG's XCom; the exit code is 1 on failure.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

import typer

from controller.cli.output import output_option

app = typer.Typer(
    name="transform",
    help="SQL transforms: compile them for a stage, run scheduled materializations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

REPO_OPT = typer.Option(
    ".", "--repo", "-r", envvar="PIPECTL_REPO", help="Manifest repository (a local directory)."
)
STAGE_OPT = typer.Option(..., "--stage", "-s", help="Stage (an Environment name).")


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _load(release: str, stage: str, repo: str) -> tuple[Any, Any, Any, list[Any]]:
    from controller.plan.desired import stage_context
    from controller.source.validate import find_repo_root, load_repo

    snap = load_repo(find_repo_root(Path(repo).resolve()))
    if release in snap.invalid_releases:
        for p in snap.invalid_releases[release]:
            typer.echo(str(p), err=True)
        _fail(f"release {release!r} is invalid")
    if release not in snap.releases:
        _fail(f"release {release!r} not found in {repo}")
    rel = snap.release(release)
    if stage not in snap.environments:
        _fail(f"unknown stage {stage!r}")
    ctx = stage_context(stage, {n: snap.environment(n) for n in snap.environments})
    upstream = [snap.release(d) for d in rel.spec.depends_on if d in snap.releases]

    def read(path: str) -> bytes:
        return (snap.root / path).read_bytes()

    return rel, ctx, read, upstream


@app.command("compile")
def compile_(
    release: str = typer.Argument(..., help="Release name."),
    stage: str = STAGE_OPT,
    repo: str = REPO_OPT,
    output: str = output_option("table", "json"),
) -> None:
    """Print each transform compiled for the stage: SQL, digest, inputs, columns, lineage."""
    from controller.plan.transforms import TransformError, compile_release

    rel, ctx, read, upstream = _load(release, stage, repo)
    try:
        compiled = compile_release(rel, read, ctx, upstream=upstream)
    except TransformError as e:
        for p in e.problems:
            typer.echo(str(p), err=True)
        _fail(f"the transforms of {release!r} do not compile")
    if output == "json":
        typer.echo(
            json.dumps(
                [
                    {
                        "name": ct.name,
                        "materialized": ct.spec.materialized.value,
                        "digest": ct.digest,
                        "sql_digest": ct.sql_digest,
                        "sql": ct.sql,
                        "inputs": {r.logical: r.physical for r in ct.inputs},
                        "depends_on": list(ct.depends_on),
                        "columns": {c.name: c.type for c in ct.columns},
                        "lineage": ct.lineage_columns(),
                        "contract_breaks": list(ct.contract_breaks),
                    }
                    for ct in compiled
                ],
                indent=2,
            )
        )
        return
    for ct in compiled:
        typer.echo(f"-- {ct.name} ({ct.spec.materialized.value}, {ct.digest})")
        for r in ct.inputs:
            typer.echo(f"--   ref('{r.logical}') -> {r.physical} [{r.kind} {r.label}]")
        for b in ct.contract_breaks:
            typer.echo(f"--   CONTRACT BROKEN: {b}")
        typer.echo(ct.sql + ";\n")


@app.command("run")
def run(
    release: str = typer.Argument(..., help="Release name."),
    stage: str = STAGE_OPT,
    transform: str | None = typer.Option(
        None, "--transform", "-t", help="Logical name (db.name); default: the release's only transform."
    ),
    partition: str | None = typer.Option(
        None, "--partition", "-p", help="Partition to overwrite (incremental), e.g. 2026-01-01 or dt=…/k=…"
    ),
    repo: str = REPO_OPT,
) -> None:
    """Run one scheduled materialization of a transform (what the release's DAG calls)."""
    from controller.model.errors import PipectlError
    from controller.plan.transforms import TransformError, compile_release
    from controller.wiring import transform_adapter

    rel, ctx, read, upstream = _load(release, stage, repo)
    if ctx.is_canary:
        _fail(f"stage {stage!r} is a canary stage: transforms do not run there")
    names = [t.name for t in rel.spec.transforms]
    if transform is None:
        if len(names) != 1:
            _fail(f"release {release!r} has {len(names)} transforms: name one with --transform")
        transform = names[0]
    if transform not in names:
        _fail(f"release {release!r} has no transform {transform!r} (it has: {', '.join(names) or 'none'})")
    try:
        compiled = {ct.spec.name: ct for ct in compile_release(rel, read, ctx, upstream=upstream)}
    except TransformError as e:
        for p in e.problems:
            typer.echo(str(p), err=True)
        _fail(f"the transforms of {release!r} do not compile")
    ct = compiled[transform]
    try:
        result = transform_adapter(ctx).run(ct.name, partition, expect_sql_digest=ct.sql_digest)
    except PipectlError as e:
        _fail(str(e))
    typer.echo(json.dumps(asdict(result), sort_keys=True))
