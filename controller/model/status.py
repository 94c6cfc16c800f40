"""Status model: what pipectl reports about a release, per stage.

The same shape is served by the HTTP API, printed by ``pipectl get -o yaml`` and mirrored into the
PipelineRelease custom resource's ``status`` subresource.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from controller.model.reasons import Phase, Verdict


class _Status(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class GateResult(_Status):
    name: str
    type: str | None = None
    verdict: Verdict
    message: str = ""


class StageStatus(_Status):
    version: str | None = None
    phase: Phase = Phase.PENDING
    gates: list[GateResult] = Field(default_factory=list)
    last_transition_time: datetime | None = None
    reason: str | None = None
    message: str | None = None
    git_commit: str | None = None
    previous_version: str | None = Field(
        default=None, description="Blue/green: the version still running beside this one until its bake ends."
    )
    switched_at: datetime | None = None


class Condition(_Status):
    """A Kubernetes-style condition (metav1.Condition)."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: datetime
    observed_generation: int | None = None


class ReleaseStatus(_Status):
    observed_commit: str | None = None
    version: str | None = None
    current_stage: str | None = None
    phase: Phase = Phase.PENDING
    stages: dict[str, StageStatus] = Field(default_factory=dict)
    conditions: list[Condition] = Field(default_factory=list)


def set_condition(conditions: list[Condition], new: Condition) -> list[Condition]:
    """Return conditions with ``new`` replacing the one of the same type.

    The transition time is kept when the status did not change, as Kubernetes does.
    """
    out: list[Condition] = []
    replaced = False
    for c in conditions:
        if c.type == new.type:
            replaced = True
            if c.status == new.status:
                new = new.model_copy(update={"last_transition_time": c.last_transition_time})
            out.append(new)
        else:
            out.append(c)
    if not replaced:
        out.append(new)
    return out
