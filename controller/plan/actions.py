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

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.name}/{self.op}"

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

    @property
    def refused(self) -> list[Action]:
        return [a for a in self.actions if a.op is Op.REFUSE]

    @property
    def is_noop(self) -> bool:
        return not self.actions


class DiffContext(BaseModel):
    """What a diff rule may consult besides desired and live: explicit approvals."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    allow_delete: frozenset[str] = Field(
        default_factory=frozenset, description="Resource names whose deletion was explicitly approved."
    )
    prune: bool = False
