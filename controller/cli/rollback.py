"""``pipectl rollback``: restore an earlier version at a stage, through the running controller.

With a server (``--server``, ``$PIPECTL_SERVER`` or the context's — unless ``--state`` or
``$PIPECTL_STATE`` names a store explicitly, as for the reading verbs) the request goes to the
controller's API with the caller's own token (``POST /api/v1/releases/NAME/rollback``): the
principal must be an approver of the stage, the controller's worker for the release runs the
rollback before its next pass (one pass per release at a time, under the controller's leader
lock), and the command waits for the outcome (``--no-wait``: print the request and return).

Without a server (an operator on the controller's host, the controller stopped) the rollback runs
in this process, on the controller's own code path, only after taking the same leader lock the
controller uses (``controller.engine.leader``): while a controller holds it the command refuses.
The actor is then ``local:<os user>``. ``--as`` is gone: the actor is always the authenticated
principal.
"""

from __future__ import annotations

import getpass
import time
from typing import Any, NoReturn

import typer

from controller.cli.approve import AS_OPT, SERVER

TO_VERSION = typer.Option(None, "--to-version", help="Version to restore (default: the last good one).")
WAIT = typer.Option(True, "--wait/--no-wait", help="Wait for the controller to finish the rollback.")
TIMEOUT = typer.Option(900.0, "--timeout", help="Seconds to wait for it (with --wait).")
REPO = typer.Option(".", "--repo", "-r", envvar="PIPECTL_REPO", help="No server: the manifest repo.")
STATE = typer.Option(
    "sqlite:///.pipectl/state.db", "--state", envvar="PIPECTL_STATE", help="No server: the state store."
)
BRANCH = typer.Option("main", "--branch", help="No server: the branch the controller follows.")


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def rollback(
    release: str = typer.Argument(..., help="Release name."),
    stage: str = typer.Option(..., "--stage", "-s", help="Stage (an Environment name)."),
    to_version: str | None = TO_VERSION,
    server: str | None = SERVER,
    wait: bool = WAIT,
    timeout: float = TIMEOUT,
    repo: str = REPO,
    state: str = STATE,
    branch: str = BRANCH,
    claimed: str | None = AS_OPT,
) -> None:
    """Restore an earlier version at a stage now and hold the current one there until a new commit
    (through the running controller, as your token's principal; audited)."""
    from controller.cli.client import server_or_context
    from controller.cli.config import explicit

    if claimed is not None:
        _fail("--as is gone: the actor is your API token's principal (local:<os user> without a server)")
    url = server if explicit("server") else (None if explicit("state") else server_or_context(server))
    if url:
        typer.echo(_remote(url, release, stage, to_version, wait, timeout))
    else:
        typer.echo(_locked(release, stage, to_version, repo, state, branch))


def _remote(url: str, release: str, stage: str, to_version: str | None, wait: bool, timeout: float) -> str:
    from controller.cli.client import api_get, api_post, release_path

    body: dict[str, Any] = {"stage": stage}
    if to_version:
        body["toVersion"] = to_version
    req = api_post(url, release_path(release, "/rollback"), body)
    if not wait:
        return f"rollback of {release} at {stage} queued as {req['id']} by {req['actor']}"
    deadline = time.monotonic() + timeout
    while req["state"] in ("queued", "running"):
        if time.monotonic() >= deadline:
            _fail(f"rollback request {req['id']} is still {req['state']} after {timeout:.0f}s", 2)
        time.sleep(1.0)
        req = api_get(url, release_path(release, f"/rollback/{req['id']}"))
    if req["state"] != "done":
        _fail(f"rollback of {release} at {stage} failed: {req['message']}")
    return f"{req['message']} (by {req['actor']})"


def _locked(release: str, stage: str, to_version: str | None, repo: str, state: str, branch: str) -> str:
    """The rollback in this process, holding the controller's leader lock."""
    from controller.cli.people import manual_rollback
    from controller.engine.controller import state_dir_of
    from controller.engine.leader import elector_from_env
    from controller.model.errors import PipectlError
    from controller.wiring import build_runtime

    try:
        elector = elector_from_env(state_dir_of(state), state)
    except ValueError as e:  # PIPECTL_LEADER_ELECTION names no elector, or not one for this store
        _fail(str(e))
    if not elector.acquire():
        holder = elector.holder() if hasattr(elector, "holder") else None
        _fail(
            "a controller holds the leader lock"
            + (f" ({holder})" if holder else "")
            + ": roll back through it with --server URL (or PIPECTL_SERVER) and your PIPECTL_TOKEN"
        )
    try:
        rt = build_runtime(repo, state, branch=branch)
        return manual_rollback(rt, release, stage, to_version, f"local:{getpass.getuser()}")
    except PipectlError as e:
        _fail(str(e))
    finally:
        elector.release()
