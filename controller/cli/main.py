"""``pipectl`` command line: kubectl-style verbs over the controller.

A verb exists only when it works. Errors are printed for people (``file:line: path: message``);
no Python traceback reaches the terminal for an expected failure.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer

from controller import __version__
from controller.cli.output import output_option

app = typer.Typer(
    name="pipectl",
    help="Declarative release controller for data pipelines (Kafka, Spark, Airflow, Hive, SQL).",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion: bash, zsh, fish
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pipectl {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
    context: str | None = typer.Option(
        None, "--context", help="Use this context of the config file instead of the current one."
    ),
) -> None:
    """pipectl: ship Kafka topics, Spark jobs, Airflow DAGs, Hive tables and SQL transforms safely."""
    import structlog

    from controller.cli.config import ConfigError, active, default_map, select
    from controller.obs.logging import configure_logging

    if not structlog.is_configured() and ctx.invoked_subcommand != "controller":
        # A one-shot verb's stdout is its output (tables, JSON): logs go to stderr, warnings and
        # errors only (PIPECTL_LOG_LEVEL=info shows more). `controller run` configures its own.
        configure_logging(json=False, level=os.environ.get("PIPECTL_LOG_LEVEL", "warning"))

    select(context)
    if ctx.resilient_parsing or ctx.invoked_subcommand == "config":
        return  # shell completion; `pipectl config` edits the file and may have to repair it
    try:
        current = active()
    except ConfigError as e:
        _fail(str(e))
    if current is not None:
        ctx.default_map = default_map(ctx.command, current)


@app.command()
def validate(
    paths: list[Path] = typer.Argument(..., help="Repository roots or manifest files."),
    against: str | None = typer.Option(
        None, "--against", help="Git ref to compare with: a changed release must bump its version."
    ),
) -> None:
    """Validate manifests; exit 0 when valid, 1 otherwise (every problem is listed)."""
    from controller.source.validate import validate_paths

    problems: list[Any] = list(validate_paths(paths))
    if against is not None:
        problems += _reused_since(paths, against)
    for p in problems:
        typer.echo(str(p), err=True)
    if problems:
        typer.echo(f"{len(problems)} problem(s) found", err=True)
        raise typer.Exit(1)
    typer.echo("valid")


def _reused_since(paths: list[Path], ref: str) -> list[str]:
    """``validate --against REF``: releases whose content changed under an unchanged version."""
    import subprocess
    import tempfile

    from controller.model.errors import PipectlError
    from controller.source.git import GitSource
    from controller.source.revision import reused_versions, revision
    from controller.source.validate import load_repo

    out: list[str] = []
    for path in paths:
        if not path.is_dir():
            continue
        sha = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--verify", f"{ref}^{{commit}}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if sha.returncode != 0:
            _fail(f"--against {ref}: not a commit in the git repository of {path}")
        with tempfile.TemporaryDirectory() as tmp:
            try:
                old_root = (
                    GitSource(str(path), cache_dir=Path(tmp), worktree=False)
                    .checkout(sha.stdout.strip())
                    .root
                )
            except PipectlError as e:
                _fail(f"--against {ref}: {e}")
            old, new = load_repo(old_root), load_repo(path)
            before = {n: revision(old.release(n), old.root) for n in old.releases}
            after = {n: revision(new.release(n), new.root) for n in new.releases}
            out += reused_versions(before, after)
    return out


# --- shared options ------------------------------------------------------------------------------

DEFAULT_STATE = "sqlite:///.pipectl/state.db"
REPO_OPT = typer.Option(
    ".", "--repo", "-r", envvar="PIPECTL_REPO", help="Manifest repo: a local dir or git URL."
)
STATE_OPT = typer.Option(
    DEFAULT_STATE, "--state", envvar="PIPECTL_STATE", help="State store (SQLAlchemy URL)."
)
SERVER_OPT = typer.Option(
    None, "--server", envvar="PIPECTL_SERVER", help="Controller API (e.g. http://127.0.0.1:8700)."
)
STAGE_OPT = typer.Option(..., "--stage", "-s", help="Stage (an Environment name).")
BRANCH_OPT = typer.Option("main", "--branch", help="Git branch to follow.")


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _store(state: str) -> Any:
    from controller.store.db import Store

    return Store(state)


def _duration(text: str) -> float:
    from controller.model.manifest import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        _fail(str(e))


# --- plan / diff / apply ---------------------------------------------------------------------------


def _one_shot(release: str, stage: str, repo: str, state: str, branch: str, apply: bool) -> tuple[Any, Any]:
    """``plan``/``diff``: the controller's own preview of the stage; ``apply``: its deploy inputs."""
    from controller.engine.manual import apply_stage, preview
    from controller.model.errors import PipectlError
    from controller.source.validate import load_repo
    from controller.wiring import build_runtime

    try:
        rt = build_runtime(repo, state, branch=branch, lineage=apply, worktree=True)
        commit = rt.source.resolve()
        snap = load_repo(rt.source.checkout(commit).root)
        snap.commit = commit
    except PipectlError as e:
        _fail(str(e))
    if release in snap.invalid_releases:
        for p in snap.invalid_releases[release]:
            typer.echo(str(p), err=True)
        _fail(f"release {release!r} is invalid")
    if release not in snap.releases:
        _fail(f"release {release!r} not found in {repo}")
    try:
        if apply:
            from controller.cli.progress import journal_progress

            with journal_progress(state, release, stage, f"applying {release} to {stage}"):
                return apply_stage(rt.reconciler, snap, release, stage)
        return preview(rt.reconciler, snap, release, stage), None
    except PipectlError as e:
        _fail(str(e))


@app.command()
def plan(
    release: str = typer.Argument(..., help="Release name."),
    stage: str = STAGE_OPT,
    repo: str = REPO_OPT,
    state: str = STATE_OPT,
    branch: str = BRANCH_OPT,
    output: str = output_option("table", "json", "yaml", "jsonpath", "custom-columns"),
) -> None:
    """Show the ordered actions that would converge a stage, with reasons; exit 1 if any is refused."""
    from controller.cli.output import parse_output, render
    from controller.cli.render import render_plan

    p, _ = _one_shot(release, stage, repo, state, branch, apply=False)
    out = parse_output(output)
    if out.structured:
        typer.echo(render(p.model_dump(mode="json"), out))
    else:
        render_plan(p, _console())
    if p.refused:
        typer.echo(f"error: the plan holds {len(p.refused)} refused change(s); nothing was applied", err=True)
        raise typer.Exit(1)


@app.command()
def diff(
    release: str = typer.Argument(..., help="Release name."),
    stage: str = STAGE_OPT,
    repo: str = REPO_OPT,
    state: str = STATE_OPT,
    branch: str = BRANCH_OPT,
) -> None:
    """Print drift per field; exit 0 = no change, 2 = changes or drift, 1 = error."""
    p, _ = _one_shot(release, stage, repo, state, branch, apply=False)
    if not p.actions:  # a delete awaiting approval is drift too
        typer.echo("no changes")
        raise typer.Exit(0)
    for a in p.actions:
        if a.changes:
            for c in a.changes:
                typer.echo(f"{a.kind.lower()} {a.name} {c}")
        else:
            typer.echo(f"{a.kind.lower()} {a.name}: {a.op} ({a.reason})")
    raise typer.Exit(2)


@app.command()
def apply(
    release: str = typer.Argument(..., help="Release name."),
    stage: str = STAGE_OPT,
    repo: str = REPO_OPT,
    state: str = STATE_OPT,
    branch: str = BRANCH_OPT,
) -> None:
    """Apply the plan to one stage now (no gates); re-running on a converged stage changes nothing.
    Runs under the controller's leader lock: refused while a controller (or another apply) holds it."""
    from controller.cli.lock import leader_lock
    from controller.cli.render import render_plan

    hint = (
        "a running controller (or another pipectl apply) is changing stages of this state store; "
        "commit the change and let the controller apply it, or run apply when it has stopped"
    )
    with leader_lock(state, "apply", hint):
        p, report = _one_shot(release, stage, repo, state, branch, apply=True)
    render_plan(p, _console())
    if p.refused:
        _fail(f"the plan holds {len(p.refused)} refused change(s); nothing was applied")
    if report is None:
        return
    for o in report.outcomes:
        typer.echo(f"{o.state:8} {o.action.describe()}" + (f": {o.message}" if o.message else ""))
    if report.failed:
        _fail(f"{len(report.failed)} action(s) failed")


# --- controller ------------------------------------------------------------------------------------

controller_app = typer.Typer(help="Run the controller.", no_args_is_help=True)
app.add_typer(controller_app, name="controller")


@controller_app.command("run")
def controller_run(
    repo: str = typer.Option(..., "--repo", "-r", help="Manifest repo: a local dir or git URL."),
    branch: str = BRANCH_OPT,
    state: str = STATE_OPT,
    source: str = typer.Option(
        "git", "--source", help="git | kubernetes: releases from PipelineRelease objects (KUBECONFIG or the "
        "pod's service account); environments and the files they reference still come from --repo.",
    ),
    namespace: list[str] = typer.Option([], "--namespace", help="--source kubernetes: read only here "
                                        "(repeatable; default: all namespaces)."),
    resync: str = typer.Option("10m", "--resync", help="--source kubernetes: list the objects again this "
                               "often; between lists a watch keeps them current and wakes the controller."),
    listen: str = typer.Option("127.0.0.1:8700", "--listen", help="HTTP API address."),
    interval: str = typer.Option("30s", "--interval", help="Git poll interval."),
    bake: str = typer.Option("60s", "--bake", help="Blue/green: how long blue keeps running after a switch."),
    log_format: str = typer.Option("json", "--log-format", help="json | console"),
    workers: int = typer.Option(
        4, "--workers", envvar="PIPECTL_WORKERS", min=1, max=64, help="Releases reconciled at once."
    ),
    events_kafka: str = typer.Option(
        "", "--events-kafka", envvar="PIPECTL_EVENTS_KAFKA",
        help="Also send operational events to Kafka: BOOTSTRAP/TOPIC, e.g. 127.0.0.1:9092/pipectl.events.",
    ),
    webhook_secret_file: Path | None = typer.Option(
        None, "--webhook-secret-file", help="Git webhook secret (default <state dir>/webhook-secret)."
    ),
    trusted_header: str = typer.Option("", "--trusted-header", help="Identity header a trusted proxy sets."),
    trusted_proxy: list[str] = typer.Option([], "--trusted-proxy", help="That proxy's address (repeatable)."),
    policy_repo: str | None = typer.Option(None, "--policy-repo", help="Environments from this repo/URL."),
    policy_path: str | None = typer.Option(None, "--policy-path", help="Environments' dir in the policy."),
    policy_branch: str = typer.Option("main", "--policy-branch", help="Branch of --policy-repo."),
    write_context: bool = typer.Option(
        True, "--write-context/--no-write-context",
        help="Record repo, state and API address as the context local-<port> (current if none is; "
        "not for --listen HOST:0).",
    ),
) -> None:
    """Run the reconciler: poll git (and wake on POST /hooks/git), converge, promote, roll back."""
    from controller.cli.access import AccessOptions, make_policy
    from controller.cli.run import run_controller
    from controller.engine.controller import state_dir_of
    from controller.model.errors import PipectlError

    access = AccessOptions(webhook_secret_file, trusted_header, trusted_proxy)
    if source not in ("git", "kubernetes"):
        _fail(f"--source {source!r}: expected git or kubernetes", 2)
    if _duration(resync) < 1:
        _fail(f"--resync {resync!r}: at least 1s", 2)
    try:
        access.trusted()
        policy = make_policy(policy_repo, policy_path, policy_branch, state_dir_of(state))
    except (ValueError, PipectlError) as e:
        _fail(str(e), 2)

    kafka = None
    if events_kafka:
        bootstrap, _, topic = events_kafka.rpartition("/")
        if not bootstrap or not topic:
            _fail(f"--events-kafka {events_kafka!r}: expected BOOTSTRAP/TOPIC", 2)
        kafka = (bootstrap, topic)
    code = run_controller(
        repo, branch, state, listen, _duration(interval), _duration(bake), log_format, workers=workers,
        events_kafka=kafka, access=access, policy=policy, write_context=write_context,
        namespaces=tuple(namespace) if source == "kubernetes" else None, resync=_duration(resync),
    )
    raise typer.Exit(code)


# --- status ----------------------------------------------------------------------------------------


from controller.cli.get import get as _get  # noqa: E402
from controller.cli.get import history as _history  # noqa: E402

app.command("get")(_get)


@app.command()
def describe(
    kind: str = typer.Argument(..., help="release"),
    name: str = typer.Argument(..., help="Release name."),
    state: str = STATE_OPT,
    server: str | None = SERVER_OPT,
) -> None:
    """Conditions, per-stage table, last plan, gate results and recent events of a release."""
    from controller.cli.describe import describe_text

    if kind not in ("release", "releases", "pipelinerelease", "pr"):
        _fail(f"unknown resource type {kind!r} (try: release)")
    from controller.cli.client import use_server

    server = use_server(server, state)
    if server:
        from controller.cli.client import api_get, release_path

        data = api_get(server, release_path(name))
        status, events = data["status"], data.get("events", [])
        last_plans: dict[str, Any] = {}
    else:
        store = _store(state)
        status = store.get_status(name)
        if status is None:
            _fail(f'release "{name}" not found')
        events = store.recent_events(name)
        from controller.store.rollout import RolloutStore

        last_plans = {k: json.loads(v) for k, v in RolloutStore(store).last_plans(name).items()}
    typer.echo(describe_text(name, status, events, last_plans))


@app.command()
def history(
    name: str = typer.Argument(..., help="Release name."),
    output: str = output_option("table", "json", "yaml", "jsonpath", "custom-columns"),
    state: str = STATE_OPT,
    server: str | None = SERVER_OPT,
) -> None:
    """Every attempt: version, stage, outcome, gates, commit, time."""
    from controller.cli.output import parse_output, render
    from controller.cli.render import plain_table

    runs = _history(state, server, name)
    out = parse_output(output)
    if out.structured:
        typer.echo(render(runs, out))
        return
    rows = []
    for r in runs:
        gates = ",".join(f"{g['name']}={g['verdict']}" for g in r.get("gates") or []) or "-"
        rows.append(
            [
                str(r["started_at"])[:19],
                r["kind"],
                r.get("version") or "-",
                r.get("stage") or "-",
                r.get("outcome") or "running",
                r.get("reason") or "-",
                gates,
                (r.get("commit") or "-")[:12],
            ]
        )
    typer.echo(
        plain_table(["TIME", "KIND", "VERSION", "STAGE", "OUTCOME", "REASON", "GATES", "COMMIT"], rows)
    )


# --- audit and state (controller/cli/audit.py) ------------------------------------------------------

from controller.cli.audit import audit as _audit  # noqa: E402
from controller.cli.audit import state_app as _state_app  # noqa: E402

app.command("audit")(_audit)
app.add_typer(_state_app, name="state")


# --- people's verbs --------------------------------------------------------------------------------


from controller.cli.approve import approve as _approve  # noqa: E402
from controller.cli.approve import promote as _promote  # noqa: E402
from controller.cli.tokens import app as _token_app  # noqa: E402

app.command("approve")(_approve)
app.command("promote")(_promote)
app.add_typer(_token_app, name="token")


from controller.cli.rollback import rollback as _rollback  # noqa: E402

app.command("rollback")(_rollback)


from controller.cli.transform import app as _transform_app  # noqa: E402

app.add_typer(_transform_app, name="transform", help="Compile and run SQL transforms.")


from controller.cli.backfill import backfill as _backfill  # noqa: E402

app.command("backfill")(_backfill)
from controller.cli.replay import replay as _replay  # noqa: E402

app.command("replay")(_replay)
from controller.cli.capacity import plan_capacity as _plan_capacity  # noqa: E402

app.command("plan-capacity")(_plan_capacity)


from controller.cli.verbs import register as _register  # noqa: E402

_register(app)  # config, version, wait, events, logs, suspend, resume, explain


def main() -> None:
    try:
        app(prog_name="pipectl")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
