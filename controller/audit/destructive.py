"""Approvals of destructive actions by principals (``pipectl approve R --stage S --destructive ID``).

A plan shows each destructive action awaiting approval with its id and digest
(``controller.plan.approvals``). ``approve_destructive`` checks, in this order: the principal may
approve the stage (``check_stage``: 404, 400, 403 — the stage Environment's ``approvers``), the
stage's current plan holds that action id (409 ``ActionNotInPlan``, naming the ids awaiting
approval), it awaits approval (400 ``NotAwaitingApproval``), and, when the caller names the digest
it looked at, the plan still shows that digest (409 ``PlanChanged``). The approval is stored bound
to (release, stage, action id, digest) (``controller.store.destructive``) with an audit record
naming the principal, the action and the digest; the controller's next pass, or ``pipectl
apply``, plans the approved action and applies it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controller.audit.approvals import ApprovalRefused, check_stage
from controller.audit.ledger import AuditRecord, Ledger
from controller.plan.actions import Action, Approval, Plan
from controller.source.validate import RepoSnapshot
from controller.store.db import Store
from controller.store.destructive import DestructiveApprovals
from controller.store.tokens import Principal


@dataclass(frozen=True)
class DestructiveRequest:
    release: str
    stage: str
    action_id: str
    digest: str | None = None
    """The digest the person looked at (optional; without it, the plan's current one)."""


def _action(plan: Plan, req: DestructiveRequest) -> Action:
    action = next((a for a in plan.actions if a.id == req.action_id), None)
    waiting = ", ".join(a.id for a in plan.pending) or "none"
    if action is None:
        raise ApprovalRefused(
            409,
            "ActionNotInPlan",
            f"the plan of {req.release} at {req.stage} has no action {req.action_id} "
            f"(awaiting approval: {waiting})",
        )
    if action.approval is not Approval.REQUIRED or not action.approval_digest:
        already = " (it is approved already)" if action.approval is Approval.APPROVED else ""
        raise ApprovalRefused(
            400,
            "NotAwaitingApproval",
            f"{req.action_id} does not await a destructive approval{already} (awaiting: {waiting})",
        )
    if req.digest is not None and req.digest != action.approval_digest:
        raise ApprovalRefused(
            409,
            "PlanChanged",
            f"{req.action_id} is {action.approval_digest} in the plan now, not {req.digest}: "
            "look at the plan again and approve that",
        )
    return action


def approve_destructive(
    store: Store, snap: RepoSnapshot, plan: Plan, req: DestructiveRequest, who: Principal
) -> dict[str, Any]:
    """Check and record one approval against ``plan`` (the stage's current plan at ``snap``)."""
    check_stage(snap, req.release, req.stage, who)
    action = _action(plan, req)
    digest = str(action.approval_digest)
    approval, new = DestructiveApprovals(store).record(
        req.release, req.stage, action.id, digest, who.user, snap.commit
    )
    if new:
        now = datetime.now(UTC)
        Ledger(store).append(
            AuditRecord(
                run_id=uuid.uuid4().hex,
                kind="approval",
                release=req.release,
                version=plan.version,
                stage=req.stage,
                git_commit=snap.commit,
                outcome="approved",
                actor=who.user,
                message=f"{who.describe()} approved destructive action {action.id} ({digest}) at {req.stage}",
                plan_summary=[action.describe()],
                started_at=now,
                finished_at=now,
                details={"destructive": {"action": action.id, "digest": digest, "op": str(action.op)}},
            )
        )
        note = f"{who.user} approved {action.id} ({digest[:19]})"
        store.add_event(req.release, req.stage, "Normal", "DestructiveChangeApproved", note)
    return {
        "release": req.release,
        "stage": req.stage,
        "action": action.id,
        "digest": digest,
        "principal": approval.approver,
        "commit": snap.commit,
        "new": new,
    }
