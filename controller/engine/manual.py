"""Stage operations people start from the CLI, on the controller's own code path.

- ``preview``: the plan the controller's next pass would compute for one stage (``pipectl plan``
  and ``diff``): same step decision, same rollout inputs, same upstream releases (a rollback's
  restore under way: what it still has to change; an object being deleted: its teardown,
  ``controller.engine.teardown``).
- ``apply_stage``: the one-shot ``pipectl apply`` (converge one stage to the release's version,
  no gates), with the inputs the controller's deploy step uses.
- ``rollback_stage``: ``pipectl rollback`` (converge a stage to an earlier promoted version and
  hold the current one there), keeping the stage's view segments; in-place jobs restart on a fresh
  checkpoint from where the current version started (``StageOps.pin_restarts``). Refused while an
  automatic rollback's restore is under way at the stage (its end would overwrite the manual one).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from controller.audit.records import RunFacts
from controller.engine import teardown
from controller.engine.executor import ApplyReport
from controller.engine.passes import Pass, Result
from controller.engine.reconciler import Reconciler
from controller.model.errors import NotFoundError, PipectlError
from controller.model.identifiers import semver_key
from controller.model.manifest import PipelineRelease
from controller.model.reasons import Phase
from controller.model.status import StageStatus
from controller.plan.actions import Plan
from controller.rollout.stages import Step, plan_steps
from controller.source.validate import RepoSnapshot
from controller.store.rollout import RestoreIntent


def _pass(rec: Reconciler, snap: RepoSnapshot, name: str, stage: str) -> Pass:
    if name not in snap.releases:
        raise NotFoundError(f"release {name!r} not found")
    rel = snap.release(name)
    if stage not in rel.spec.rollout.stages:
        raise NotFoundError(
            f"stage {stage!r} is not in the rollout of {name} ({', '.join(rel.spec.rollout.stages)})"
        )
    return Pass.of(snap, rel, rec.load_status(name), Result())


def step_of(rec: Reconciler, p: Pass, stage: str) -> Step:
    for s, step, _why in plan_steps(p.version, rec.facts(p)):
        if s == stage:
            return step
    raise NotFoundError(stage)


def preview(rec: Reconciler, snap: RepoSnapshot, name: str, stage: str) -> Plan:
    """The plan the controller's pass would compute for ``stage`` now (nothing applied)."""
    if name in snap.deleting:  # its object is being deleted: the teardown's plan
        _pass(rec, snap, name, stage)
        return teardown.plan_stage(rec, snap, name, stage)
    p = _pass(rec, snap, name, stage)
    ops, ctx = rec.ops, p.ctx(stage)
    step = step_of(rec, p, stage)
    if step is Step.IN_SYNC:
        inputs, stop_blue, _ = ops.sync_inputs(p.rel, stage, ctx, p.stage(stage), rec.steps.bake_seconds)
        upstream = ops.served_upstream(p.upstream, stage)
        return ops.plan(p.rel, stage, ctx, inputs, p.commit, upstream, stop_blue)[0]
    restoring = rec.restorer.pending(p, stage) if step is Step.RESTORING else None
    if restoring is not None:  # what the restore under way still has to change
        return restoring
    if step in (Step.NOT_REACHED, Step.AWAIT_APPROVAL, Step.HALTED, Step.HOLD_TARGET):
        held = ctx.canary_of if step is Step.HOLD_TARGET and ctx.canary_of else stage
        stop_version = p.stage(stage).version if step is Step.HOLD_TARGET else p.version
        kg = ops.known_good(p.name, held)
        if kg is not None:
            good, commit = kg
            stop = []
            if step in (Step.HALTED, Step.HOLD_TARGET) and stop_version and good.spec.version != stop_version:
                stop = ops.versioned_jobs(p.rel, ctx, stop_version)
            return ops.plan(good, stage, ctx, ops.hold_inputs(good, stage, ctx), commit, (), stop)[0]
    base = ops.baseline(p.rel, stage, ctx)
    inputs = ops.deploy_inputs(p.rel, stage, ctx, base)
    return ops.plan(p.rel, stage, ctx, inputs, p.commit, ops.served_upstream(p.upstream, stage))[0]


def apply_stage(
    rec: Reconciler, snap: RepoSnapshot, name: str, stage: str
) -> tuple[Plan, ApplyReport | None]:
    """Converge ``stage`` to the release's version now, without gates (an operator's action)."""
    p = _pass(rec, snap, name, stage)
    ops, ctx = rec.ops, p.ctx(stage)
    inputs = ops.deploy_inputs(p.rel, stage, ctx, ops.baseline(p.rel, stage, ctx))
    upstream = ops.served_upstream(p.upstream, stage)
    return ops.converge(p.rel, stage, ctx, inputs, p.commit, "apply", upstream=upstream)


def _target(rec: Reconciler, name: str, stage: str, current: str | None, to_version: str | None) -> str:
    history = rec.ops.rollouts.history(name)
    if to_version is not None:
        if to_version not in history.versions:
            known = ", ".join(history.sorted_versions()) or "none"
            raise PipectlError(f"{name} {to_version} was never promoted; known versions: {known}")
        return to_version
    kg = rec.store.known_good(name, stage)
    if kg is not None and kg["version"] != current:
        return str(kg["version"])
    earlier = [v for v in history.sorted_versions() if current is None or semver_key(v) < semver_key(current)]
    if not earlier:
        raise PipectlError(f"no earlier version of {name} was promoted; nothing to roll back to")
    return earlier[-1]


def rollback_stage(
    rec: Reconciler, snap: RepoSnapshot, name: str, stage: str, to_version: str | None, actor: str
) -> str:
    """Converge ``stage`` to an earlier promoted version and hold the current one there."""
    status = rec.load_status(name)
    if not status.stages and status.version is None:
        raise NotFoundError(f'release "{name}" not found in the state store')
    state = rec.ops.rollouts.stage(name, stage)
    if state.restoring is not None:
        raise PipectlError(_restore_under_way(name, stage, state.restoring))
    current = status.version
    version = _target(rec, name, stage, current, to_version)
    entry = rec.ops.rollouts.history(name).versions[version]
    good = PipelineRelease.model_validate_json(entry.manifest)
    ctx = Pass.of(snap, good, status, Result()).ctx(stage)
    started = rec.clock()
    failed = rec.ops.versioned_jobs(good, ctx, current) if current and current != version else []
    if current and current != version and rec.ops.pin_restarts(good, ctx, state, current):
        rec.ops.rollouts.put_stage(name, stage, state)  # in-place jobs: fresh checkpoint, recorded first
    inputs = rec.ops.hold_inputs(good, stage, ctx)
    plan, report = rec.ops.converge(good, stage, ctx, inputs, entry.commit, "rollback", delete_jobs=failed)
    if plan.refused or (report and report.failed):
        problems = [a.describe() for a in plan.refused] + [
            o.message for o in (report.failed if report else [])
        ]
        raise PipectlError("rollback could not be applied: " + "; ".join(problems))
    rec.ops.set_known_good(name, stage, version, entry.commit, entry.manifest)
    st = status.stages.setdefault(stage, StageStatus())
    st.version, st.phase, st.reason = current, Phase.ROLLED_BACK, "ManualRollback"
    st.message = f"{actor} rolled back to {version}"
    st.last_transition_time = rec.clock()
    rec.store.put_status(name, status.model_dump(mode="json", by_alias=True))
    rec.store.add_event(name, stage, "Warning", "ManualRollback", st.message)
    _audit_rollback(rec, good, stage, entry.commit, plan, started, actor, current)
    return f"rolled back {name} at {stage} to {version}; {current} is held there until a new version"


def _restore_under_way(name: str, stage: str, r: RestoreIntent) -> str:
    """Why a manual rollback is refused while an automatic one restores the stage: the restore's
    end would overwrite it (status, known good, live state), so it goes first."""
    to = "nothing (first version)"
    if r.to is not None:
        to = PipelineRelease.model_validate_json(r.to.manifest).spec.version
    return (
        f"{name} at {stage}: an automatic rollback of {r.version} to {to} is under way "
        f"({r.trigger}, started {r.started_at:%Y-%m-%dT%H:%M:%SZ}); a manual rollback now would be "
        "overwritten when it ends. Wait until the stage is RolledBack or RollbackFailed "
        f"(pipectl describe release {name}), then roll back again if you still need to"
    )


def _audit_rollback(
    rec: Reconciler,
    good: PipelineRelease,
    stage: str,
    commit: str | None,
    plan: Plan,
    started: datetime,
    actor: str,
    current: str | None,
) -> None:
    run = RunFacts(
        "rollback", uuid.uuid4().hex, commit, "rolledBack", started, rec.clock(), rec.ops.instance, plan
    )
    run.actor, run.reason = actor, "ManualRollback"
    run.message = f"{actor} rolled back {stage} from {current} to {good.spec.version}"
    rec.ops.audit(good, stage, run)
