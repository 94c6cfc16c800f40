"""Deleting a PipelineRelease object (``--source kubernetes``): what its ``pipectl.dev/prune``
finalizer does and waits for (pure), the way Argo CD's resources-finalizer and Flux's prune work,
with pipectl's approval rule.

- The controller puts ``FINALIZER`` on every object it reconciles (``with_finalizer``).
- Once the object is being deleted, each stage the release reached is planned as if the release
  declared nothing (``teardown_release``): its streaming jobs are stopped (not destructive) and
  every resource of the stage's inventory becomes a prune candidate, a delete awaiting approval,
  exactly as a resource removed from the manifest (``controller.engine.prune``).
- ``decide`` says whether the release is gone (nothing left in any stage's inventory, nothing
  awaiting approval, nothing failed): then the finalizer is removed (``without_finalizer``) and the
  API server deletes the object. Otherwise the message names each action awaiting approval with
  the command that approves it.
- The annotation ``pipectl.dev/deletion-policy: orphan`` (like ``kubectl delete
  --cascade=orphan``) removes the finalizer without pruning; ``prune`` (the default) prunes. Any
  other value prunes too (an approval is needed for every delete either way) and is reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from controller.model.manifest import PipelineRelease
from controller.source.objects import DELETION_POLICY, FINALIZER

__all__ = [
    "Deletion",
    "Policy",
    "StageTeardown",
    "decide",
    "policy_of",
    "teardown_release",
    "with_finalizer",
    "without_finalizer",
]


class Policy(StrEnum):
    PRUNE = "prune"
    ORPHAN = "orphan"


def policy_of(value: str | None) -> tuple[Policy, str]:
    """(the policy, a problem with the annotation or "")."""
    if value is None or value == Policy.PRUNE:
        return Policy.PRUNE, ""
    if value == Policy.ORPHAN:
        return Policy.ORPHAN, ""
    return Policy.PRUNE, (
        f"metadata.annotations.{DELETION_POLICY}: {value!r} is neither prune nor orphan; pruning"
    )


def with_finalizer(finalizers: Sequence[str]) -> list[str] | None:
    """The finalizers with ours added, None when it is there already (nothing to patch)."""
    return None if FINALIZER in finalizers else [*finalizers, FINALIZER]


def without_finalizer(finalizers: Sequence[str]) -> list[str] | None:
    """The finalizers without ours, None when it is not there (nothing to patch)."""
    return [f for f in finalizers if f != FINALIZER] if FINALIZER in finalizers else None


def teardown_release(name: str, version: str, stages: Sequence[str]) -> PipelineRelease:
    """The release ``name`` declaring nothing: its plan at a stage deletes what the stage owns."""
    return PipelineRelease.model_validate({
        "apiVersion": "pipectl.dev/v1alpha1",
        "kind": "PipelineRelease",
        "metadata": {"name": name},
        "spec": {"version": version, "rollout": {"stages": list(stages)}},
    })


@dataclass(frozen=True)
class StageTeardown:
    """One stage's teardown pass: what still waits."""

    stage: str
    pending: tuple[str, ...] = ()
    """Ids of the delete actions awaiting approval."""
    left: tuple[str, ...] = ()
    """Inventory keys (``Kind/name``) the stage still owns after the pass."""
    errors: tuple[str, ...] = ()
    """Actions that failed or were refused, with their messages."""
    changed: bool = False
    """The pass applied something (a job stopped, a delete): the next pass checks what is left."""

    @property
    def clear(self) -> bool:
        return not (self.pending or self.left or self.errors or self.changed)


@dataclass(frozen=True)
class Deletion:
    done: bool
    message: str


def decide(release: str, stages: Sequence[StageTeardown], problem: str = "") -> Deletion:
    """Whether the finalizer may go (every stage clear), else what the deletion waits for."""
    if all(s.clear for s in stages):
        return Deletion(True, f"every resource of {release} is deleted; finalizer {FINALIZER} removed")
    parts: list[str] = []
    commands = [
        f"pipectl approve {release} --stage {s.stage} --destructive {a}" for s in stages for a in s.pending
    ]
    if commands:
        parts.append(
            f"deletion waits for approval of {len(commands)} destructive action(s): " + "; ".join(commands)
        )
    for s in stages:
        if s.errors:
            parts.append(f"stage {s.stage}: " + "; ".join(s.errors))
        others = [k for k in s.left if f"{k}/delete" not in s.pending]
        if others:
            parts.append(f"stage {s.stage}: still owns {', '.join(others)}")
    if not parts:
        applied = ", ".join(s.stage for s in stages if s.changed)
        parts.append(f"tearing down (applied at {applied}); checking that nothing is left")
    if problem:
        parts.append(problem)
    return Deletion(False, ". ".join(parts))
