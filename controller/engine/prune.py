"""Prune candidates and destructive approvals around one stage's plan (``StageOps.plan`` and
``converge``, so the controller's pass and every CLI verb see the same).

- ``gather``, before planning: the stage's inventory entries the release no longer declares
  (``controller.plan.inventory``) that are still live, still the release's and in no other
  release's inventory at the stage (a topic moved to another release) become prune candidates;
  people's unused approvals (``controller.store.destructive``) become the plan's grants. When
  nothing was left over no backend is asked anything.
- ``record``, after a converge that applied its plan or had nothing to apply: the inventory gains
  what the plan declared and loses what is gone (absent, another release's, or deleted now);
  approvals whose action was applied are marked used by the run; an action newly awaiting
  approval is announced once by a ``DestructiveChangeNeedsApproval`` event naming the command.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.engine.backends import StagePorts
from controller.engine.executor import ApplyReport
from controller.model.manifest import PipelineRelease
from controller.plan.actions import Approval, Grant, Op, Plan
from controller.plan.desired import StageContext
from controller.plan.inventory import entries, key_of, leftovers, owned_by, split_key
from controller.plan.resources import ResourceKind
from controller.store.db import Store
from controller.store.destructive import DestructiveApprovals, Inventory, InventoryDoc

NEEDS_APPROVAL = "DestructiveChangeNeedsApproval"
APPLIED_STATES = ("done", "skipped")


@dataclass
class StagePrune:
    """What ``gather`` found for one plan, kept for ``record``."""

    release: str
    stage: str
    doc: InventoryDoc
    current: dict[str, str] = field(default_factory=dict)
    candidates: list[Any] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)
    grants: tuple[Grant, ...] = ()


def gather(
    store: Store, be: StagePorts, rel: PipelineRelease, stage: str, ctx: StageContext, desired: Sequence[Any]
) -> StagePrune:
    inventory = Inventory(store)
    doc = inventory.get(rel.name, stage)
    out = StagePrune(rel.name, stage, doc, entries(rel, ctx, desired))
    left = leftovers(doc.entries, out.current)
    if left:
        taken = inventory.claimed_by_others(rel.name, stage)
        out.gone |= {k for k in left if k in taken}
    by_kind: dict[ResourceKind, list[str]] = {}
    for key in left:
        if key in out.gone:
            continue
        kind, name = split_key(key)
        by_kind.setdefault(kind, []).append(name)
    for kind, names in by_kind.items():
        found = be.adapters[kind].observe(kind, names)
        for name in names:
            live = found.get(name)
            if live is not None and owned_by(live, rel.name):
                out.candidates.append(live)
            else:
                out.gone.add(key_of(kind, name))
    out.grants = DestructiveApprovals(store).grants(rel.name, stage)
    return out


def record(
    store: Store, sp: StagePrune, plan: Plan, report: ApplyReport | None, run_id: str | None
) -> None:
    approvals = DestructiveApprovals(store)
    kept = {k: v for k, v in sp.doc.entries.items() if k not in sp.gone}
    for o in report.outcomes if report is not None else []:
        if o.state not in APPLIED_STATES:
            continue
        if o.action.op is Op.DELETE:
            kept.pop(key_of(o.action.kind, o.action.name), None)
        if o.action.approval is Approval.APPROVED and o.action.approval_digest and run_id:
            approvals.use(sp.release, sp.stage, o.action.approval_digest, run_id)
    if not plan.refused:
        kept.update(sp.current)
    pending = {a.approval_digest: a for a in plan.pending if a.approval_digest}
    for digest, a in pending.items():
        if digest not in sp.doc.announced:
            store.add_event(sp.release, sp.stage, "Warning", NEEDS_APPROVAL, f"{a.id}: {a.reason}")
    doc = InventoryDoc(entries=kept, announced=sorted(pending))
    if doc != sp.doc:
        Inventory(store).put(sp.release, sp.stage, doc)


def approved_note(plan: Plan) -> list[dict[str, str]]:
    """The approved destructive actions of a plan, for its audit record."""
    return [
        {"action": a.id, "approver": a.approved_by or "", "digest": a.approval_digest or ""}
        for a in plan.actions
        if a.approval is Approval.APPROVED
    ]
