"""Approvals by principals, bound to what was looked at.

An approval binds (release, stage, version, revision digest) to the principal that gave it. The
revision digest (``controller.source.revision``) covers the release manifest and every file it
deploys, computed at the controller's current commit; the approval gate and the ``promotion:
approval`` step count only an approval of the current version *and* digest, so approving 1.0.0
never approves a 1.1.0 committed meanwhile, nor other content under the same version.

``check`` decides, in this order: the release exists at that commit (else 404), the stage is one
of its ``spec.rollout.stages`` (400), the principal may approve that stage — the stage
Environment's ``spec.approvers`` when set, anyone authenticated otherwise (403; these three are
``check_stage``, which destructive approvals and rollbacks use too) — and the version
(and revision, when given) is the current one (409, naming the current version). ``approve``
records it and writes an audit record naming the principal and the digest. The API
(``controller.api``) and the operator path of ``pipectl approve`` both go through here.

``permission`` answers "may this principal approve this stage now?" for the release board
(``GET /api/v1/releases/NAME/permissions``) by running ``check`` itself on the current version and
digest, so the page's answer and the approve endpoint's refusal cannot disagree.
``awaiting_approval`` reads which stages of a stored status wait for an approval.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controller.audit.ledger import AuditRecord, Ledger
from controller.model.manifest import PipelineRelease
from controller.model.reasons import Reason, Verdict
from controller.source.revision import revision
from controller.source.validate import RepoSnapshot
from controller.store.db import Store
from controller.store.tokens import Principal


class ApprovalRefused(Exception):
    """Why an approval is not recorded: an HTTP status, a short reason name and a message."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


@dataclass(frozen=True)
class ApprovalRequest:
    release: str
    stage: str
    version: str
    revision: str | None = None
    """The digest the person looked at (optional; the version is always checked)."""


@dataclass(frozen=True)
class Approval:
    release: str
    stage: str
    version: str
    revision: str
    principal: str
    commit: str | None
    new: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "release": self.release,
            "stage": self.stage,
            "version": self.version,
            "revision": self.revision,
            "principal": self.principal,
            "commit": self.commit,
            "new": self.new,
        }


def check_stage(snap: RepoSnapshot, release: str, stage: str, who: Principal) -> PipelineRelease:
    """The release when ``who`` may approve changes to ``stage`` of it at ``snap`` (a version, a
    destructive action, a rollback); else raises ``ApprovalRefused`` (404, 409, 400, 403)."""
    at = (snap.commit or "the working tree")[:12]
    if release not in snap.releases:
        if release in snap.invalid_releases:
            raise ApprovalRefused(409, "ReleaseInvalid", f"release {release!r} is invalid at {at}")
        raise ApprovalRefused(404, "ReleaseNotFound", f"release {release!r} not found at {at}")
    rel = snap.release(release)
    stages = rel.spec.rollout.stages
    if stage not in stages:
        raise ApprovalRefused(
            400, "UnknownStage", f"stage {stage!r} is not a stage of {rel.name} ({', '.join(stages)})"
        )
    approvers = snap.environment(stage).spec.approvers if stage in snap.environments else None
    if approvers is not None and not approvers.allows(who.user, who.groups):
        raise ApprovalRefused(
            403,
            "NotAnApprover",
            f"{who.user} may not approve stage {stage} (see its Environment's approvers)",
        )
    return rel


def check(snap: RepoSnapshot, req: ApprovalRequest, who: Principal) -> str:
    """The current revision digest when ``who`` may approve ``req`` at ``snap``; else raises
    ``ApprovalRefused``."""
    at = (snap.commit or "the working tree")[:12]
    rel = check_stage(snap, req.release, req.stage, who)
    current = rel.spec.version
    if req.version != current:
        raise ApprovalRefused(
            409,
            "VersionChanged",
            f"{rel.name} is at version {current} now (commit {at}), not {req.version}: "
            f"look at {current} and approve that",
        )
    digest = revision(rel, snap.root).digest
    if req.revision is not None and req.revision != digest:
        raise ApprovalRefused(
            409,
            "RevisionChanged",
            f"{rel.name} {current} is revision {digest} at commit {at}, not {req.revision}",
        )
    return digest


@dataclass(frozen=True)
class StagePermission:
    """Whether a principal may approve ``version`` (at ``revision``) for ``stage`` now, and if not, why."""

    stage: str
    version: str
    revision: str
    can_approve: bool
    reason: str | None = None
    """``check``'s refusal message (None when allowed)."""
    refusal: str | None = None
    """``check``'s reason name, e.g. ``NotAnApprover`` (None when allowed)."""


def permission(snap: RepoSnapshot, release: str, stage: str, who: Principal) -> StagePermission:
    """Whether ``who`` may approve the current version and digest of ``release`` for ``stage`` at
    ``snap``: ``check``, exactly as an approval runs it. Raises ``ApprovalRefused`` when the release
    itself is unknown (404) or invalid (409) at ``snap``; a stage-level refusal is the answer."""
    if release not in snap.releases:
        check_stage(snap, release, stage, who)  # raises the 404 or 409
    rel = snap.release(release)
    version, digest = rel.spec.version, revision(rel, snap.root).digest
    try:
        check(snap, ApprovalRequest(release, stage, version, digest), who)
    except ApprovalRefused as e:
        return StagePermission(stage, version, digest, False, e.message, e.reason)
    return StagePermission(stage, version, digest, True)


def awaiting_approval(status: Mapping[str, Any]) -> list[str]:
    """The stages of a stored release status (``ReleaseStatus`` as JSON) that wait for an approval:
    promotion into them is held (reason ``AwaitingApproval``), or an ``approval`` gate of the
    version deployed there is still inconclusive while it verifies."""
    out: list[str] = []
    stages = status.get("stages")
    for stage, st in (stages if isinstance(stages, Mapping) else {}).items():
        if not isinstance(st, Mapping):
            continue
        gates = st.get("gates")
        gate_waits = st.get("phase") == "Verifying" and any(
            isinstance(g, Mapping)
            and g.get("type") == "approval"
            and g.get("verdict") == Verdict.INCONCLUSIVE
            for g in (gates if isinstance(gates, list) else [])
        )
        if st.get("reason") == Reason.AWAITING_APPROVAL or gate_waits:
            out.append(str(stage))
    return out


def approve(store: Store, snap: RepoSnapshot, req: ApprovalRequest, who: Principal) -> Approval:
    """Check and record an approval (and its audit record); idempotent per (version, revision)."""
    digest = check(snap, req, who)
    new = record_approval(store, req.release, req.stage, req.version, who, digest, snap.commit)
    return Approval(req.release, req.stage, req.version, digest, who.user, snap.commit, new)


def record_approval(
    store: Store,
    release: str,
    stage: str,
    version: str,
    who: Principal,
    digest: str,
    commit: str | None = None,
) -> bool:
    """Store the approval and write an audit record; False when it was approved already."""
    now = datetime.now(UTC)
    new = store.approve(release, stage, version, who.user, digest)
    if new:
        Ledger(store).append(
            AuditRecord(
                run_id=uuid.uuid4().hex,
                kind="approval",
                release=release,
                version=version,
                stage=stage,
                git_commit=commit,
                revision=digest,
                outcome="approved",
                actor=who.user,
                message=f"{who.describe()} approved {version} (revision {digest}) for {stage}",
                started_at=now,
                finished_at=now,
            )
        )
        note = f"{who.user} approved {version} ({digest[:19]})"
        store.add_event(release, stage, "Normal", "Approved", note)
    return new
