"""``pipectl replay``: run a release's streaming job from the Kafka offsets of a time into its own
checkpoint and output table, beside the live job (repairs, blue/green warm-up).

    pipectl replay host-metrics --stage dev --from-time 2026-03-01T23:58:30Z --available-now --wait
    pipectl replay host-metrics --stage dev --from-time 2026-03-01T00:00:00Z --to-time 2026-03-02T00:00:00Z
    pipectl replay host-metrics --stage dev --from-time 2026-03-01T00:00:00Z            # continuous
    pipectl replay host-metrics --stage dev --from-time 2026-03-01T00:00:00Z --stop     # ... stop it

The job is the repository's version of the release (the streaming job's spec, entrypoint and
args as the controller would run them at that stage); names, offsets and arguments are described
in ``controller.plan.replay``: output ``<table>__replay_<from>[_<to>]`` (created like the
release's table), checkpoint ``<job checkpoint>/replay_<…>``, job ``<job>-replay-<…>``. Without
``--to-time``/``--available-now`` the replay keeps running (a warm-up that follows the live
stream) until ``--stop``. ``--wait`` follows a bounded replay to its end and prints the row count
of the replay table (through Presto). Every start, finish and stop is an audit record (``replay``).

The command runs under the controller's leader lock (``controller.cli.lock``; with ``--wait``
until the replay ends): refused while a controller or another verb holds it; ``--dry-run`` takes
no lock.

Exit codes: 0 ok, 1 error or failed replay, 2 still running at ``--timeout`` (``--wait``).
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NoReturn

import typer

from controller.cli.output import output_option

DEFAULT_STATE = "sqlite:///.pipectl/state.db"
LOCK_HINT = (
    "a running controller (or another pipectl verb) is changing stages of this state store; start "
    "or stop the replay when it has stopped"
)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def replay(
    release: str = typer.Argument(..., help="Release name."),
    stage: str = typer.Option(..., "--stage", "-s", help="Stage (an Environment name)."),
    from_time: str = typer.Option(..., "--from-time", help="Replay from this time (ISO-8601 or epoch ms)."),
    to_time: str | None = typer.Option(
        None, "--to-time", help="Stop at the offsets of this time (exclusive; job needs --ending-offsets)."
    ),
    job: str | None = typer.Option(None, "--job", help="Streaming job (default: the only one)."),
    available_now: bool = typer.Option(
        False, "--available-now", help="Replay up to the current end offsets, then stop."
    ),
    wait: bool = typer.Option(False, "--wait", help="Wait for a bounded replay to end; print its row count."),
    timeout: str = typer.Option("30m", "--timeout", help="How long --wait waits."),
    stop: bool = typer.Option(False, "--stop", help="Stop this replay (after its current batch)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; start nothing."),
    repo: str = typer.Option(
        ".", "--repo", "-r", envvar="PIPECTL_REPO", help="Manifest repository (a local directory)."
    ),
    state: str = typer.Option(DEFAULT_STATE, "--state", envvar="PIPECTL_STATE", help="State store URL."),
    output: str = output_option("table", "json"),
) -> None:
    """Replay a streaming job from the Kafka offsets of a time into its own checkpoint and table."""
    from controller.cli.backfill import _load
    from controller.cli.lock import leader_lock
    from controller.model.manifest import parse_duration
    from controller.plan.replay import ReplayError, parse_time

    try:
        from_ms = parse_time(from_time)
        to_ms = parse_time(to_time) if to_time else None
        timeout_s = parse_duration(timeout)
    except (ReplayError, ValueError) as e:
        _fail(str(e))
    with ExitStack() as held:
        if not dry_run:
            held.enter_context(leader_lock(state, "replay", LOCK_HINT))
        rel, ctx, root = _load(release, stage, repo)
        spec = _job_spec(rel, release, job)

        if wait and not (available_now or to_ms is not None):
            _fail("--wait needs a bounded replay (--available-now or --to-time)")
        engine, plan, code = _prepare(
            rel, ctx, root, spec, stage=stage, state=state, from_ms=from_ms, to_ms=to_ms,
            available_now=available_now,
        )

        info: dict[str, Any] = {
            "release": rel.name, "stage": stage, "version": plan.version, "tag": plan.tag,
            "job": plan.job.name, "checkpoint": plan.job.checkpoint, "tables": [t.name for t in plan.tables],
            "topics": plan.topics,
            "starting_offsets": plan.starting, "ending_offsets": plan.ending, "records": plan.records,
            "bounded": plan.bounded,
        }
        if dry_run:
            if output == "json":
                typer.echo(json.dumps({**info, "args": plan.job.args}, indent=2))
            else:
                typer.echo("\n".join(plan.describe()))
                typer.echo("args: " + " ".join(plan.job.args))
            return
        res = _start_or_stop(engine, plan, code, stop=stop, wait=wait, output=output, timeout_s=timeout_s)
        if res is None:
            return
        _report(info, res, wait=wait, output=output)


def _job_spec(rel: Any, release: str, job: str | None) -> Any:
    """The release's streaming job named ``--job``, or its only one."""
    jobs = {j.name: j for j in rel.spec.streaming_jobs}
    if job is None:
        if len(jobs) != 1:
            _fail(f"release {release!r} has {len(jobs)} streaming jobs: use --job ({', '.join(jobs)})")
        job = next(iter(jobs))
    if job not in jobs:
        _fail(f"release {release!r} has no streaming job {job!r} (it has: {', '.join(jobs) or 'none'})")
    return jobs[job]


def _prepare(
    rel: Any,
    ctx: Any,
    root: Path,
    spec: Any,
    *,
    stage: str,
    state: str,
    from_ms: int,
    to_ms: int | None,
    available_now: bool,
) -> tuple[Any, Any, list[Any]]:
    """The replay engine on the stage's backends, the replay plan of the job as the controller would
    run it at the stage, and the entrypoint's code artifact."""
    from controller.audit.ledger import Artifact, Ledger
    from controller.engine.controller import state_dir_of
    from controller.engine.replay import ReplayEngine
    from controller.model.errors import PipectlError
    from controller.plan.desired import desired_resources, digest, job_name, topic_name
    from controller.plan.replay import ReplayError
    from controller.plan.resources import StreamingJobResource, TableResource
    from controller.store.db import Store
    from controller.wiring import Wiring

    state_dir = state_dir_of(state)

    def read(path: str) -> bytes:
        return (root / path).read_bytes()

    desired = desired_resources(rel, ctx, read, checkpoint_root=str((state_dir / "checkpoints").resolve()))
    name = job_name(ctx, rel.name, spec, rel.spec.version)
    [live_job] = [r for r in desired if isinstance(r, StreamingJobResource) and r.name == name]
    tables = [r for r in desired if isinstance(r, TableResource)]
    topics = [topic_name(ctx, s.topic) for s in spec.sources]
    source = read(spec.entrypoint)
    code = [Artifact(path=spec.entrypoint, digest=digest(source))]
    store = Store(state)
    try:
        be = Wiring(state_dir=state_dir, repo_root=root).backends(ctx, root)
        engine = ReplayEngine(be, Ledger(store))
        plan = engine.prepare(
            rel.name, stage, live_job, tables, topics, source, from_ms=from_ms, to_ms=to_ms,
            available_now=available_now,
        )
    except (PipectlError, ReplayError) as e:
        _fail(str(e))
    return engine, plan, code


def _start_or_stop(
    engine: Any, plan: Any, code: list[Any], *, stop: bool, wait: bool, output: str, timeout_s: float
) -> Any:
    """``--stop``: stop the replay (None). Else start it and, with ``--wait``, follow it to its end."""
    import getpass

    from controller.model.errors import PipectlError

    actor = getpass.getuser()
    try:
        if stop:
            stopped = engine.stop(plan, code=code, actor=actor)
            typer.echo(f"replay {plan.job.name}: {'stopped' if stopped else 'was not running'}")
            return None
        res = engine.start(plan, code=code, actor=actor)
        if output != "json":
            typer.echo("\n".join(plan.describe()))
            typer.echo(f"replay {plan.job.name}: {res.message}")
        if wait:
            res = engine.wait(res, timeout_s=timeout_s, code=code, actor=actor)
    except PipectlError as e:
        _fail(str(e))
    return res


def _report(info: dict[str, Any], res: Any, *, wait: bool, output: str) -> None:
    """Print the outcome (JSON, or the row count after ``--wait``); exit 2 still running, 1 failed."""
    info.update({"started": res.started, "message": res.message, "finished": res.finished,
                 "succeeded": res.succeeded, "rows": res.rows})
    if output == "json":
        typer.echo(json.dumps(info, indent=2))
    elif wait:
        rows = f"; {res.rows} row(s) in {', '.join(info['tables'])}" if res.rows is not None else ""
        typer.echo(res.message + rows)
    if wait and res.finished is False:
        raise typer.Exit(2)
    if wait and not res.succeeded:
        raise typer.Exit(1)
