"""Stage progression: which stage a release works on next, and what a set of gate verdicts means.

Pure decisions over recorded facts (no I/O, no clock): the reconciler gathers ``StageFacts`` from
the state store and acts on the ``Step`` returned. A version that failed at a stage halts there;
only a new version (a new commit) moves the release again. A canary stage runs in its target's
namespace: once the target has rolled back (or failed) the version the canary runs, the canary
stands down too and holds the target's known good, so it never starts that version again beside
the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from controller.model.manifest import Promotion
from controller.model.reasons import Phase, Reason, Verdict


class Step(StrEnum):
    IN_SYNC = "in-sync"
    """The stage runs this version already: only repair drift."""
    DEPLOY = "deploy"
    """Converge the stage to this version, then verify its gates."""
    AWAIT_APPROVAL = "await-approval"
    """Promotion into the stage waits for `pipectl approve`."""
    BLOCKED = "blocked"
    """A dependency has not Succeeded at this stage."""
    HALTED = "halted"
    """This version failed here (rolled back); keep the last good version in place."""
    NOT_REACHED = "not-reached"
    """An earlier stage has not passed yet: keep the last good version in place."""
    RESTORING = "restoring"
    """A rollback is restoring the stage's known good: look whether it has landed (it may wait for a
    backend, bounded by a deadline). Comes before anything else the stage would do."""
    HOLD_TARGET = "hold-target"
    """A canary stage whose target rolled back (or failed) the version the canary runs: hold the
    target's known good (the canary's version stopped) until it is the canary's turn to deploy a
    newer version."""


HALTING_PHASES = frozenset({Phase.ROLLED_BACK, Phase.ROLLBACK_FAILED, Phase.FAILED})
"""A version in one of these phases at a stage stays stopped there until a new version."""


@dataclass(frozen=True)
class StageFacts:
    stage: str
    promotion: Promotion
    version: str | None = None
    phase: Phase | None = None
    approved_by: str | None = None
    waiting_on: Sequence[str] = field(default_factory=tuple)
    """dependsOn releases that have not Succeeded at this stage."""
    canary_of: str | None = None
    """A canary stage: the stage it runs beside, in whose namespace its jobs live (``canaryOf``)."""
    restoring: str | None = None
    """The version a rollback under way at this stage is rolling back (None: no restore under way)."""


def stood_down(f: StageFacts, facts: Sequence[StageFacts]) -> StageFacts | None:
    """The target of canary stage ``f`` when the target halted (or is rolling back) the version the
    canary runs, else None."""
    if f.canary_of is None or f.version is None:
        return None
    t = next((x for x in facts if x.stage == f.canary_of), None)
    if t is None or not (t.restoring == f.version or (t.version == f.version and t.phase in HALTING_PHASES)):
        return None
    return t


def _hold_target_why(f: StageFacts, t: StageFacts) -> str:
    if t.restoring == f.version:
        return f"{t.stage} is rolling back {f.version}"
    return f"{t.stage} {t.phase} {f.version}"


def plan_steps(version: str, facts: Sequence[StageFacts]) -> list[tuple[str, Step, str]]:
    """One (stage, step, why) per stage, in rollout order."""
    out: list[tuple[str, Step, str]] = []
    active_found = False
    for f in facts:
        if f.restoring is not None:  # a restore under way finishes first, whatever else changed
            out.append((f.stage, Step.RESTORING, f"rolling back {f.restoring}"))
            active_found = True
            continue
        target = stood_down(f, facts)
        held = (f.stage, Step.HOLD_TARGET, _hold_target_why(f, target)) if target else None
        if active_found:
            out.append(held or (f.stage, Step.NOT_REACHED, "an earlier stage has not passed"))
            continue
        if f.version == version and (f.phase is Phase.SUCCEEDED or held):
            out.append(held or (f.stage, Step.IN_SYNC, f"{version} succeeded"))
            continue
        active_found = True
        if f.version == version and f.phase in HALTING_PHASES:
            out.append((f.stage, Step.HALTED, f"{version} {f.phase} here; commit a new version"))
        elif f.waiting_on:
            who = ", ".join(f"{d} {f.stage} Succeeded" for d in f.waiting_on)
            out.append((f.stage, Step.BLOCKED, f"waiting for {who}"))
        elif f.promotion is Promotion.APPROVAL and not f.approved_by:
            out.append(
                (f.stage, Step.AWAIT_APPROVAL, f"approve with: pipectl approve <release> --stage {f.stage}")
            )
        else:
            out.append((f.stage, Step.DEPLOY, f"promote {version} to {f.stage}"))
    return out


@dataclass(frozen=True)
class GateOutcome:
    phase: Phase
    reason: Reason
    message: str


def judge(
    verdicts: Sequence[tuple[str, Verdict, str]], automatic_rollback: bool, unavailable: Sequence[str] = ()
) -> GateOutcome:
    """All pass → Succeeded; any fail → RolledBack (or Failed without automatic rollback);
    otherwise Verifying until the inconclusive ones decide: BackendUnavailable, naming them, when
    ``unavailable`` backends are why (an outage, not a gate still gathering its sample)."""
    failed = [(n, m) for n, v, m in verdicts if v is Verdict.FAIL]
    if failed:
        msg = "; ".join(f"gate {n} failed: {m}" for n, m in failed)
        if automatic_rollback:
            return GateOutcome(Phase.ROLLED_BACK, Reason.GATE_FAILED, msg)
        return GateOutcome(Phase.FAILED, Reason.GATE_FAILED, msg)
    waiting = [n for n, v, _ in verdicts if v is Verdict.INCONCLUSIVE]
    if waiting and unavailable:
        return GateOutcome(
            Phase.VERIFYING,
            Reason.BACKEND_UNAVAILABLE,
            f"waiting on gates: {', '.join(waiting)} ({', '.join(sorted(set(unavailable)))} unavailable)",
        )
    if waiting:
        return GateOutcome(
            Phase.VERIFYING, Reason.GATE_INCONCLUSIVE, "waiting on gates: " + ", ".join(waiting)
        )
    return GateOutcome(Phase.SUCCEEDED, Reason.RECONCILIATION_SUCCEEDED, f"{len(verdicts)} gate(s) passed")
