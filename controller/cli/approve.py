"""``pipectl approve`` and ``pipectl promote``: approvals by authenticated principals.

The usual path posts to the running controller (``--server``, ``$PIPECTL_SERVER`` or the context
file) with the caller's own token (``$PIPECTL_TOKEN`` or the context); the controller records the
token's principal, never a claimed name. The request names the version (default: the one the
controller shows now) and optionally the revision digest that was looked at; a newer commit
makes it 409.

``--destructive ACTION_ID`` approves one destructive action the stage's plan shows as awaiting
approval (``pipectl plan`` prints the command), bound to its digest (``--digest`` names the one
that was looked at; default: the plan's current one) — through the API only.

The operator path, for someone on the controller host with the state store: ``--state URL
--user`` checks the approval against the release at the commit the controller last observed
(``--repo``, and ``--policy-repo``/``--policy-path`` when the controller uses a policy repo) and
writes it directly, as the principal ``local:<os user>``.
"""

from __future__ import annotations

import getpass
from typing import Any, NoReturn

import typer

VERSION_OPT = typer.Option(None, "--version", help="Version to approve (default: the controller's current).")
REVISION_OPT = typer.Option(None, "--revision", help="Revision digest (sha256:…) that was looked at.")
AS_OPT = typer.Option(None, "--as", hidden=True, help="Removed: the approver is your token's principal.")
STATE = typer.Option(
    "sqlite:///.pipectl/state.db", "--state", envvar="PIPECTL_STATE", help="State store (operator path)."
)
SERVER = typer.Option(
    None, "--server", envvar="PIPECTL_SERVER", help="Controller API (e.g. http://127.0.0.1:8700)."
)
LOCAL_USER = typer.Option(
    False, "--user", help="Operator path: approve as local:<os user> straight into --state (controller host)."
)
REPO = typer.Option(".", "--repo", "-r", help="Operator path: the controller's manifest repo.")
BRANCH = typer.Option("main", "--branch", help="Operator path: the branch the controller follows.")
POLICY_REPO = typer.Option(None, "--policy-repo", help="Operator path: the controller's policy repo.")
POLICY_PATH = typer.Option(None, "--policy-path", help="Operator path: Environments' path in the policy.")
DESTRUCTIVE = typer.Option(
    None, "--destructive", help="Approve this destructive action of the stage's plan (its id, as shown)."
)
DIGEST = typer.Option(None, "--digest", help="With --destructive: the action's digest that was looked at.")


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _no_claimed_names(claimed: str | None) -> None:
    if claimed is not None:
        _fail(
            "--as is gone: the approver is the principal of your API token. Ask an operator for one "
            "(`pipectl token create --user NAME`) and set PIPECTL_TOKEN"
        )


def approve(
    release: str = typer.Argument(..., help="Release name."),
    stage: str = typer.Option(..., "--stage", "-s", help="Stage (an Environment name)."),
    version: str | None = VERSION_OPT,
    revision: str | None = REVISION_OPT,
    claimed: str | None = AS_OPT,
    server: str | None = SERVER,
    state: str = STATE,
    local_user: bool = LOCAL_USER,
    repo: str = REPO,
    branch: str = BRANCH,
    policy_repo: str | None = POLICY_REPO,
    policy_path: str | None = POLICY_PATH,
    destructive: str | None = DESTRUCTIVE,
    digest: str | None = DIGEST,
) -> None:
    """Approve promotion of a release's version into a stage, or one destructive action of the
    stage's plan (--destructive), as your token's principal (audited)."""
    _no_claimed_names(claimed)
    if destructive is not None or digest is not None:
        _destructive(release, stage, destructive, digest, server, local_user or bool(version or revision))
        return
    if local_user:
        out = _local(release, stage, version, revision, state, repo, branch, policy_repo, policy_path)
    else:
        out = _remote(release, stage, version, revision, server)
    again = "" if out.get("new", True) else " (already approved)"
    typer.echo(
        f"approved {release} {out['version']} (revision {out['revision']}) for {stage} "
        f"as {out['principal']}{again}"
    )


def promote(
    release: str = typer.Argument(..., help="Release name."),
    stage: str = typer.Option(..., "--stage", "-s", help="Stage (an Environment name)."),
    claimed: str | None = AS_OPT,
    server: str | None = SERVER,
) -> None:
    """Promote the controller's current version into a stage now: approve it and wake the controller."""
    _no_claimed_names(claimed)
    out = _remote(release, stage, None, None, server)
    typer.echo(f"approved {release} {out['version']} for {stage} as {out['principal']}")


def _remote(release: str, stage: str, version: str | None, revision: str | None, server: str | None) -> Any:
    from controller.cli.client import api_get, api_post, release_path, server_or_context

    url = server_or_context(server)
    if not url:
        _fail(
            "approvals go through the controller's API with your own token: pass --server URL (or set "
            "PIPECTL_SERVER) and PIPECTL_TOKEN; operators on the controller host may use --state URL --user"
        )
    if version is None:
        version = str(api_get(url, release_path(release))["status"].get("version") or "")
        if not version:
            _fail(f"release {release!r} has no version yet")
        typer.echo(f"approving {release} {version} (the controller's current version) for {stage}", err=True)
    body: dict[str, Any] = {"stage": stage, "version": version}
    if revision:
        body["revision"] = revision
    return api_post(url, release_path(release, "/approve"), body)


def _destructive(
    release: str, stage: str, action_id: str | None, digest: str | None, server: str | None, mixed: bool
) -> None:
    from controller.cli.client import api_post, release_path, server_or_context

    if action_id is None:
        _fail("--digest goes with --destructive ACTION_ID")
    if mixed:
        _fail("--destructive approves one action of the plan: not with --version, --revision or --user")
    url = server_or_context(server)
    if not url:
        _fail(
            "destructive approvals go through the controller's API with your own token: pass --server "
            "URL (or set PIPECTL_SERVER) and PIPECTL_TOKEN"
        )
    body: dict[str, Any] = {"stage": stage, "actionId": action_id}
    if digest:
        body["digest"] = digest
    out = api_post(url, release_path(release, "/destructive-approvals"), body)
    again = "" if out.get("new", True) else " (already approved)"
    typer.echo(
        f"approved destructive action {out['action']} ({out['digest']}) of {release} at {stage} "
        f"as {out['principal']}{again}; the controller applies it in its next pass"
    )


def _local(
    release: str,
    stage: str,
    version: str | None,
    revision: str | None,
    state: str,
    repo: str,
    branch: str,
    policy_repo: str | None,
    policy_path: str | None,
) -> dict[str, Any]:
    from controller.audit.approvals import ApprovalRefused, ApprovalRequest
    from controller.audit.approvals import approve as record
    from controller.cli.access import make_policy
    from controller.engine.controller import state_dir_of
    from controller.model.errors import PipectlError
    from controller.source.git import GitSource
    from controller.source.validate import load_repo
    from controller.store.db import Store
    from controller.store.tokens import Principal

    store = Store(state)
    st = store.get_status(release)
    if not st or not st.get("version"):
        _fail(f'release "{release}" not found in the state store (has the controller seen it?)')
    commit = st.get("observedCommit")
    try:
        source = GitSource(repo, branch, cache_dir=state_dir_of(state) / "git")
        source.policy = make_policy(policy_repo, policy_path, branch, state_dir_of(state))
        if source.is_git and not commit:
            _fail(f"the controller has not observed a commit of {release} yet")
        snap = load_repo(source.checkout(commit if source.is_git else None).root)
    except PipectlError as e:
        _fail(str(e))
    snap.commit = commit if source.is_git else None
    who = Principal(user=f"local:{getpass.getuser()}", via="local")
    try:
        req = ApprovalRequest(release, stage, version or str(st["version"]), revision)
        return record(store, snap, req, who).as_dict()
    except ApprovalRefused as e:
        _fail(e.message)
