"""``pipectl backfill``: re-run a release's Airflow DAG for a range of ``dt`` days, exactly once each.

    pipectl backfill host-metrics --stage dev --from 2026-03-01 --to 2026-03-03 --repo manifests
    pipectl backfill host-metrics --stage dev --from 2026-03-01 --to 2026-03-03 --dry-run

One chunk per day; each runs as the DAG run ``pipectl_backfill__<release>__<version>__<day>``
(retries and ``--force`` re-runs: ``…__r<attempt>``, see ``controller.plan.backfill``; Airflow
reserves the bare ``backfill__`` prefix for its own runs) with logical date = the day and
``conf`` = the DAG's ``params`` from the release manifest plus ``partition`` (the day) and
``pipectl`` (kind, release, stage, version, attempt). The version is the one Airflow reports for
the stage's DAG (its ``version:`` tag, i.e. what the controller deployed); ``--version`` asserts it.

After each success the output partition is measured through Presto (rows and an
order-independent checksum) and recorded in the state store's backfill ledger. A second identical
backfill starts no run for completed partitions (it re-measures them and says whether they still
match); ``--force`` re-runs them. The output table is ``--table`` (logical ``db.table`` of the
release, or physical), else the release's only transform (what the example DAG materializes).

The whole command runs under the controller's leader lock (``controller.cli.lock``): refused while
a controller or another verb holds it; ``--dry-run`` takes no lock.

Exit codes: 0 all partitions done, 1 a partition failed (or an error), 2 runs still running at
``--timeout`` (run the same command again to resume them).
"""

from __future__ import annotations

import json
import subprocess
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NoReturn

import typer

from controller.cli.output import output_option

DEFAULT_STATE = "sqlite:///.pipectl/state.db"
LOCK_HINT = (
    "a running controller (or another pipectl verb) is changing stages of this state store; run the "
    "backfill when it has stopped (a backfill holds the lock until its runs end or --timeout)"
)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def backfill(
    release: str = typer.Argument(..., help="Release name."),
    stage: str = typer.Option(..., "--stage", "-s", help="Stage (an Environment name)."),
    from_: str = typer.Option(..., "--from", help="First dt partition, YYYY-MM-DD."),
    to: str = typer.Option(..., "--to", help="Last dt partition (included), YYYY-MM-DD."),
    parallelism: int = typer.Option(2, "--parallelism", "-p", help="DAG runs in flight at once."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the chunks and run ids; run nothing."),
    force: bool = typer.Option(False, "--force", help="Re-run partitions the ledger has as done."),
    retries: int = typer.Option(2, "--retries", help="New attempts for a failed chunk (each a new run id)."),
    dag: str | None = typer.Option(None, "--dag", help="DAG id in the release (default: its only DAG)."),
    table: str | None = typer.Option(
        None, "--table", help="Output table to measure (db.table); default: the release's only transform."
    ),
    partition_column: str = typer.Option("dt", "--partition-column", help="Partition column of the output."),
    version: str | None = typer.Option(None, "--version", help="Fail unless the DAG runs this version."),
    verify: bool = typer.Option(
        True, "--verify/--no-verify", help="Re-measure skipped partitions against the ledger."
    ),
    timeout: str = typer.Option("1h", "--timeout", help="Stop waiting after this long (runs keep going)."),
    poll: str = typer.Option("2s", "--poll", help="Run-state poll interval."),
    repo: str = typer.Option(
        ".", "--repo", "-r", envvar="PIPECTL_REPO", help="Manifest repository (a local directory)."
    ),
    state: str = typer.Option(DEFAULT_STATE, "--state", envvar="PIPECTL_STATE", help="State store URL."),
    output: str = output_option("table", "json"),
) -> None:
    """Backfill dt partitions through the release's Airflow DAG: deterministic run ids, ledger, retries."""
    from controller.cli.lock import leader_lock
    from controller.model.errors import PipectlError
    from controller.model.manifest import parse_duration
    from controller.plan.backfill import BackfillError, parse_day, partitions
    from controller.plan.desired import dag_id

    try:
        days = partitions(parse_day(from_), parse_day(to))
        timeout_s, poll_s = parse_duration(timeout), parse_duration(poll)
    except (BackfillError, ValueError) as e:
        _fail(str(e))
    with ExitStack() as held:
        if not dry_run:
            held.enter_context(leader_lock(state, "backfill", LOCK_HINT))
        rel, ctx, root = _load(release, stage, repo)
        if ctx.is_canary:
            _fail(f"stage {stage!r} is a canary stage: it runs no DAGs")
        spec = _dag_spec(rel, release, dag)
        target_dag = dag_id(ctx, spec.id)
        engine, ver = _engine_at_live_version(state, root, ctx, stage, target_dag, version, poll_s)
        req = _request(
            rel, ctx, root, spec,
            stage=stage, target_dag=target_dag, version=ver, days=days, table=table,
            partition_column=partition_column, parallelism=parallelism, retries=retries, force=force,
            verify=verify, timeout_s=timeout_s,
        )

        if dry_run:
            _print_plan(engine, req, output)
            return
        try:
            report = _run_with_progress(engine, req, quiet=output == "json")
        except PipectlError as e:
            _fail(str(e))
        _print_report(report, req, output, target_dag=target_dag, version=ver)
        if report.failed:
            raise typer.Exit(1)
        if report.unfinished:
            raise typer.Exit(2)


def _dag_spec(rel: Any, release: str, dag: str | None) -> Any:
    """The release's DAG named ``--dag``, or its only DAG."""
    dags = {d.id: d for d in rel.spec.dags}
    if dag is None:
        if len(dags) != 1:
            _fail(f"release {release!r} has {len(dags)} DAG(s): name one with --dag ({', '.join(dags)})")
        dag = next(iter(dags))
    if dag not in dags:
        _fail(f"release {release!r} has no DAG {dag!r} (it has: {', '.join(dags) or 'none'})")
    return dags[dag]


def _engine_at_live_version(
    state: str, root: Path, ctx: Any, stage: str, target_dag: str, version: str | None, poll_s: float
) -> tuple[Any, str]:
    """The backfill engine on the stage's backends, and the version of the DAG Airflow runs (which
    must be active, unpaused, tagged with a version, and ``--version`` if given)."""
    from controller.audit.ledger import Ledger
    from controller.engine.backfill import BackfillEngine
    from controller.engine.controller import state_dir_of
    from controller.model.errors import PipectlError
    from controller.store.db import Store
    from controller.wiring import Wiring

    store = Store(state)
    try:
        be = Wiring(state_dir=state_dir_of(state), repo_root=root).backends(ctx, root)
        engine = BackfillEngine(store, be.airflow, be.presto, ledger=Ledger(store), poll_interval=poll_s)
        live = engine.deployed_dag(target_dag)
    except PipectlError as e:
        _fail(str(e))
    if live is None:
        _fail(f"DAG {target_dag} is not active in Airflow: converge stage {stage!r} first (pipectl apply)")
    if not live.version:
        _fail(f"DAG {target_dag} carries no version: tag (not deployed by pipectl?)")
    if version is not None and version != live.version:
        _fail(f"DAG {target_dag} runs version {live.version} at {stage}, not {version}")
    if live.paused:
        _fail(f"DAG {target_dag} is paused: its runs would stay queued")
    return engine, live.version


def _request(
    rel: Any,
    ctx: Any,
    root: Path,
    spec: Any,
    *,
    stage: str,
    target_dag: str,
    version: str,
    days: list[str],
    table: str | None,
    partition_column: str,
    parallelism: int,
    retries: int,
    force: bool,
    verify: bool,
    timeout_s: float,
) -> Any:
    """The ``BackfillRequest``: the DAG's params as conf, the output table, the DAG code's digest."""
    from controller.audit.ledger import Artifact
    from controller.engine.backfill import BackfillRequest
    from controller.model.errors import PipectlError
    from controller.plan.desired import digest, physical_table

    refs = {t.name: physical_table(ctx, rel, t.name, version) for t in rel.spec.tables}
    out_table = _output_table(rel, ctx, table, refs)
    conf: dict[str, Any] = dict(spec.params)
    try:
        code = [Artifact(path=spec.path, digest=digest((root / spec.path).read_bytes()))]
    except OSError:
        code = [Artifact(path=spec.path, digest="missing")]
    import getpass

    try:
        return BackfillRequest(
            release=rel.name, stage=stage, dag_id=target_dag, version=version, partitions=days, conf=conf,
            output_table=out_table, partition_column=partition_column, parallelism=parallelism,
            retries=retries, force=force, verify=verify, timeout_s=timeout_s, git_commit=_git_commit(root),
            code=code, inputs=[f"hive:{t}" for t in sorted(set(refs.values()))], actor=getpass.getuser(),
        )
    except PipectlError as e:
        _fail(str(e))


def _print_report(report: Any, req: Any, output: str, *, target_dag: str, version: str) -> None:
    """The outcome of every partition, as JSON (``-o json``) or a table and a summary line."""
    if output == "json":
        typer.echo(
            json.dumps(
                {
                    "backfill_id": report.backfill_id,
                    "release": req.release,
                    "stage": req.stage,
                    "dag_id": req.dag_id,
                    "version": req.version,
                    "output_table": req.output_table,
                    "outcome": report.outcome,
                    "runs_started": report.runs_started,
                    "partitions": [o.__dict__ | {"decision": str(o.decision)} for o in report.outcomes],
                },
                indent=2,
                default=str,
            )
        )
    else:
        from controller.cli.render import plain_table

        typer.echo(
            plain_table(
                ["PARTITION", "STATUS", "ATTEMPTS", "STARTED", "RUN ID", "ROWS", "CHECKSUM", "NOTE"],
                [
                    [
                        o.partition, o.status, o.attempts, o.runs_started, o.run_id,
                        "-" if o.rows is None else o.rows, o.checksum or "-", o.message,
                    ]
                    for o in report.outcomes
                ],
            )
        )
        typer.echo(
            f"backfill {report.backfill_id[:12]}: {report.outcome}; {report.runs_started} run(s) started "
            f"in {target_dag} at version {version}"
        )


def _load(release: str, stage: str, repo: str) -> tuple[Any, Any, Path]:
    from controller.plan.desired import stage_context
    from controller.source.validate import find_repo_root, load_repo

    root = find_repo_root(Path(repo).resolve())
    snap = load_repo(root)
    if release in snap.invalid_releases:
        for p in snap.invalid_releases[release]:
            typer.echo(str(p), err=True)
        _fail(f"release {release!r} is invalid")
    if release not in snap.releases:
        _fail(f"release {release!r} not found in {repo}")
    rel = snap.release(release)
    if stage not in snap.environments:
        _fail(f"unknown stage {stage!r}")
    if stage not in rel.spec.rollout.stages:
        _fail(f"stage {stage!r} is not in the rollout of {release} ({', '.join(rel.spec.rollout.stages)})")
    ctx = stage_context(stage, {n: snap.environment(n) for n in snap.environments})
    return rel, ctx, root


def _output_table(rel: Any, ctx: Any, table: str | None, refs: dict[str, str]) -> str:
    """``--table`` (a release table → its physical name, a release transform → its stage name, else
    taken as physical), or the release's only transform."""
    from controller.plan.desired import table_name

    transforms = [t.name for t in rel.spec.transforms]
    if table is None:
        if len(transforms) != 1:
            _fail(f"name the output table with --table (the release has {len(transforms)} transforms)")
        return str(table_name(ctx, transforms[0]))
    if table.count(".") != 1:
        _fail(f"--table {table!r}: expected db.table")
    if table in refs:
        return refs[table]
    if table in transforms:
        return str(table_name(ctx, table))
    return table


def _print_plan(engine: Any, req: Any, output: str) -> None:
    from controller.cli.render import plain_table

    chunks = engine.plan(req)
    if output == "json":
        typer.echo(
            json.dumps(
                {
                    "dag_id": req.dag_id,
                    "version": req.version,
                    "output_table": req.output_table,
                    "chunks": [
                        {
                            "partition": c.partition, "decision": str(c.decision), "attempt": c.attempt,
                            "run_id": c.run_id, "logical_date": c.logical_date.isoformat(),
                            "reason": c.reason,
                        }
                        for c in chunks
                    ],
                },
                indent=2,
            )
        )
        return
    typer.echo(f"DAG {req.dag_id} at version {req.version}; output {req.output_table or '(not measured)'}")
    typer.echo(
        plain_table(
            ["PARTITION", "DECISION", "ATTEMPT", "RUN ID", "LOGICAL DATE", "REASON"],
            [
                [c.partition, str(c.decision), c.attempt, c.run_id, c.logical_date.isoformat(), c.reason]
                for c in chunks
            ],
        )
    )
    runs = sum(c.starts_run for c in chunks)
    skips = sum(str(c.decision) == "skip" for c in chunks)
    typer.echo(
        f"dry run: {runs} run(s) would start, {skips} partition(s) skipped, "
        f"{len(chunks) - runs - skips} resumed; parallelism {req.parallelism}, retries {req.retries}"
    )


def _run_with_progress(engine: Any, req: Any, *, quiet: bool) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    console = Console(stderr=True, highlight=False, quiet=quiet)
    done_events = {"skip", "success", "failed"}
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]backfill[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[last]}"),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(req.dag_id, total=len(req.partitions), last="")

        def listener(event: str, partition: str, detail: str) -> None:
            final = event in done_events
            progress.update(task, advance=1 if final else 0, last=f"{partition} {event}: {detail}"[:90])
            if event in ("failed", "retry-scheduled", "timeout"):
                progress.console.print(f"{partition} {event}: {detail}")

        return engine.run(req, listener)
