"""A plan is a value: ordered actions, each with a reason and a reversibility tag (Terraform-style)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from controller.plan.resources import Resource, ResourceKind


class Op(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    REFUSE = "refuse"


class Reversibility(StrEnum):
    REVERSIBLE = "reversible"
    IRREVERSIBLE = "irreversible"
    DESTRUCTIVE = "destructive"


class Approval(StrEnum):
    """A destructive action's approval state (``controller.plan.approvals``)."""

    REQUIRED = "required"
    """Shown, never applied: ``pipectl approve RELEASE --stage S --destructive ACTION_ID``."""
    APPROVED = "approved"
    """Approved by a principal for this very action (id and digest): applied."""


class FieldChange(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    field: str
    old: Any = None
    new: Any = None

    def __str__(self) -> str:
        return f"{self.field}: {_fmt(self.old)} → {_fmt(self.new)}"


def _fmt(v: Any) -> str:
    return "(none)" if v is None else str(v)


class Action(BaseModel):
    """One change to one resource. ``desired`` carries everything the adapter needs to apply it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    op: Op
    kind: ResourceKind
    name: str
    reason: str = Field(description="Why, for people.")
    reason_code: str | None = Field(
        default=None, description="A controller.model.reasons.Reason for refusals."
    )
    reversibility: Reversibility = Reversibility.REVERSIBLE
    changes: list[FieldChange] = Field(default_factory=list)
    desired: Resource | None = None
    depends_on: list[str] = Field(default_factory=list)
    approval: Approval | None = Field(
        default=None, description="Destructive actions: approval required, or approved (and applied)."
    )
    approval_digest: str | None = Field(
        default=None, description="What an approval binds to: the action, its desired and live state."
    )
    approved_by: str | None = None

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.name}/{self.op}"

    @property
    def pending(self) -> bool:
        """Awaiting a destructive approval: never applied."""
        return self.approval is Approval.REQUIRED

    def describe(self) -> str:
        head = f"{self.op} {self.kind.lower()} {self.name}"
        return f"{head} ({self.reason})" if self.reason else head


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    release: str
    version: str
    stage: str
    commit: str | None = None
    generated_at: datetime
    actions: list[Action] = Field(default_factory=list)
    notes: list[str] = Field(
        default_factory=list,
        description="Reasons about the plan as a whole, e.g. the producer/consumer order a schema change "
        "needs (controller.rollout.schema_order).",
    )

    @property
    def refused(self) -> list[Action]:
        return [a for a in self.actions if a.op is Op.REFUSE]

    @property
    def pending(self) -> list[Action]:
        """Destructive actions awaiting approval (prunes, and refusals an approval would lift)."""
        return [a for a in self.actions if a.pending]

    @property
    def applicable(self) -> list[Action]:
        """What an apply runs: neither refused nor awaiting approval."""
        return [a for a in self.actions if a.op is not Op.REFUSE and not a.pending]

    @property
    def is_noop(self) -> bool:
        """Nothing to apply and nothing refused (prunes awaiting approval block nothing)."""
        return not self.applicable and not self.refused


class Grant(BaseModel):
    """A principal's approval of one destructive action: its id and the digest it was shown with."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    action_id: str
    digest: str
    approver: str


class DiffContext(BaseModel):
    """What a diff rule may consult besides desired and live: explicit approvals.

    ``allow_delete`` is the engine's own (streaming jobs it stops); ``grants`` are people's
    approvals of destructive actions, each bound to an action id and digest
    (``controller.plan.approvals``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    allow_delete: frozenset[str] = Field(
        default_factory=frozenset, description="Resource names whose deletion was explicitly approved."
    )
    prune: bool = False
    grants: tuple[Grant, ...] = ()
    new_checkpoints: frozenset[str] = Field(
        default_factory=frozenset,
        description="In-place jobs the rollout moves to a fresh checkpoint from recorded offsets.",
    )

    def grant(self, action_id: str, digest: str) -> Grant | None:
        return next((g for g in self.grants if g.action_id == action_id and g.digest == digest), None)


def approval_hint(release: str, stage: str, action_id: str) -> str:
    return f"needs approval: pipectl approve {release} --stage {stage} --destructive {action_id}"
