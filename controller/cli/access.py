"""Who may use the running controller's API, wired for ``pipectl controller run``.

- Principals: per-user API tokens in the state store (``pipectl token create``), and optionally a
  trusted proxy's identity header (``--trusted-header X-Forwarded-User --trusted-proxy 127.0.0.1``).
- The git webhook's secret: ``$PIPECTL_WEBHOOK_SECRET``, else the file ``--webhook-secret-file``
  (default ``<state dir>/webhook-secret``, created 0600 with a random secret when missing). It is
  the GitHub HMAC key and GitLab's token; it is never a user's token.
- Approvals through the API are checked against the release at the controller's current commit
  (``controller.audit.approvals``) and recorded for the authenticated principal.
- Destructive approvals are checked against the stage's plan computed now, at that commit
  (``controller.audit.destructive``); manual rollbacks are queued on the controller's request slot
  (``controller.engine.requests``) for the release's worker. Both by an approver of the stage.
- The schema registry (``/schema-registry``) answers at the controller's commit
  (``controller.engine.registry_sync``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from controller.api.auth import TrustedProxy
from controller.api.operations import Operations, RollbackAsk
from controller.api.server import ApiState
from controller.audit.approvals import ApprovalRefused, ApprovalRequest, approve, check_stage
from controller.audit.destructive import DestructiveRequest, approve_destructive
from controller.engine.controller import Controller
from controller.engine.kube_source import KubeSource
from controller.engine.manual import preview
from controller.engine.registry_sync import RegistrySync
from controller.engine.requests import RequestConflict
from controller.model.endpoints import REGISTRY_TOKEN_ENV
from controller.model.errors import PipectlError
from controller.obs import metrics
from controller.rollout.schema_registry import Registry, RegistryError
from controller.source.policy import ENVIRONMENTS, Policy
from controller.source.validate import RepoSnapshot, load_repo
from controller.store.tokens import Principal, TokenStore
from controller.wiring import Runtime

log = structlog.get_logger("pipectl.controller")


@dataclass
class AccessOptions:
    webhook_secret_file: Path | None = None
    trusted_header: str = ""
    trusted_proxies: list[str] = field(default_factory=list)

    def trusted(self) -> TrustedProxy | None:
        if not self.trusted_header and not self.trusted_proxies:
            return None
        return TrustedProxy.parse(self.trusted_header, self.trusted_proxies)


def webhook_secret(state_dir: Path, path: Path | None = None) -> str:
    """``$PIPECTL_WEBHOOK_SECRET``, else the secret file (created 0600 when missing)."""
    env = os.environ.get("PIPECTL_WEBHOOK_SECRET")
    if env:
        if not env.strip():  # a blank secret would refuse every webhook without saying why
            raise ValueError("PIPECTL_WEBHOOK_SECRET is blank")
        return env.strip()
    path = path or state_dir / "webhook-secret"
    if path.exists():
        secret = path.read_text().strip()
        if not secret:
            raise ValueError(f"{path}: the webhook secret file is empty")
        return secret
    secret = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    log.info("webhook secret created", path=str(path))
    return secret


def snapshot_at(rt: Runtime, commit: str | None) -> RepoSnapshot:
    """The repo (with the policy's environments, when configured) at ``commit``."""
    snap = load_repo(rt.source.checkout(commit).root)
    snap.commit = commit
    return snap


def approver(rt: Runtime, ctl: Controller) -> Callable[[ApprovalRequest, Principal], dict[str, Any]]:
    """Approvals checked against what the controller works from now: its commit, or with
    ``--source kubernetes`` the objects it last read (the git repository holds no releases then)."""

    def do(req: ApprovalRequest, who: Principal) -> dict[str, Any]:
        return approve(rt.store, _current(rt, ctl), req, who).as_dict()

    return do


def _current(rt: Runtime, ctl: Controller) -> RepoSnapshot:
    if isinstance(ctl.source, KubeSource):  # --source kubernetes: the releases are the objects
        if ctl.latest is None:
            raise ApprovalRefused(503, "NotReady", "the controller has not read its objects yet")
        return ctl.latest
    commit = ctl.last_commit
    if rt.source.is_git and commit is None:
        raise ApprovalRefused(503, "NotReady", "the controller has not read its git repository yet")
    return snapshot_at(rt, commit)


def destructive_approver(
    rt: Runtime, ctl: Controller
) -> Callable[[DestructiveRequest, Principal], dict[str, Any]]:
    """Destructive approvals checked against the stage's plan at the controller's commit."""

    def do(req: DestructiveRequest, who: Principal) -> dict[str, Any]:
        snap = _current(rt, ctl)
        check_stage(snap, req.release, req.stage, who)  # 404/400/403 before any backend is asked
        try:
            plan = preview(rt.reconciler, snap, req.release, req.stage)
        except PipectlError as e:
            raise ApprovalRefused(
                503, "PlanUnavailable", f"the plan of {req.stage} is not available: {e}"
            ) from e
        return approve_destructive(rt.store, snap, plan, req, who)

    return do


def operations(rt: Runtime, ctl: Controller) -> Operations:
    def rollback(ask: RollbackAsk, who: Principal) -> dict[str, Any]:
        check_stage(_current(rt, ctl), ask.release, ask.stage, who)
        if rt.store.get_status(ask.release) is None:
            raise ApprovalRefused(
                404, "ReleaseNotFound", f'release "{ask.release}" not found in the state store'
            )
        try:
            req = ctl.rollbacks.submit(ask.release, ask.stage, ask.to_version, who.user)
        except RequestConflict as e:
            raise ApprovalRefused(409, "RollbackInProgress", str(e)) from None
        ctl.trigger(ask.release)
        return req.as_dict()

    def status(release: str, request_id: str) -> dict[str, Any] | None:
        req = ctl.rollbacks.get(release, request_id)
        return req.as_dict() if req is not None else None

    return Operations(destructive_approver(rt, ctl), rollback, status)


def schema_registry(rt: Runtime, ctl: Controller) -> Callable[[], Registry]:
    """The schema registry at the commit the controller works from now."""
    sync = RegistrySync(rt.store, rt.source, lambda commit: snapshot_at(rt, commit))

    def current() -> Registry:
        commit = ctl.last_commit
        if rt.source.is_git and commit is None:
            raise RegistryError(503, 50003, "the controller has not read its git repository yet")
        return sync.at(commit)

    return current


def api_state(
    rt: Runtime, ctl: Controller, health: Callable[[], dict[str, Any]], opts: AccessOptions, state_dir: Path
) -> ApiState:
    if os.environ.get("PIPECTL_API_TOKEN"):
        log.warning(
            "PIPECTL_API_TOKEN is no longer read: API callers use their own tokens (pipectl token create) "
            "and the webhook its secret (PIPECTL_WEBHOOK_SECRET or --webhook-secret-file)"
        )
    tokens = TokenStore(rt.store)
    if tokens.active_count() == 0 and not opts.trusted_header:
        log.warning(
            "no API tokens: every read and approval is refused until `pipectl token create --user NAME`"
        )
    return ApiState(
        store=rt.store,
        tokens=tokens,
        webhook_secret=webhook_secret(state_dir, opts.webhook_secret_file),
        trigger=ctl.trigger,
        health=health,
        metrics=metrics.render,
        approve=approver(rt, ctl),
        trusted=opts.trusted(),
        operations=operations(rt, ctl),
        snapshot=lambda: _current(rt, ctl),  # the approver's commit: the board's answers match approvals
        schema_registry=schema_registry(rt, ctl),
        # the token ``controller run`` handed to its jobs (a caller's own token is no job token)
        registry_token=rt.wiring.job_env.get(REGISTRY_TOKEN_ENV),
    )


def make_policy(repo: str | None, path: str | None, branch: str, state_dir: Path) -> Policy | None:
    """``--policy-repo``/``--policy-path``: where Environments come from (None: the release repo's
    ``environments/``)."""
    if not repo and not path:
        return None
    return Policy(repo or None, path or ENVIRONMENTS, branch, cache_dir=state_dir / "git")
