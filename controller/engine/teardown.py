"""Tearing a release down, stage by stage, when its PipelineRelease object is deleted
(``controller.rollout.deletion``; the finalizer itself is ``controller.engine.kube_finalizer``).

There is no second delete path: each stage the release has is converged (``StageOps.converge``)
to the release declaring nothing (``deletion.teardown_release``). Its streaming jobs are the
engine's own to stop (``delete_jobs``: the jobs of the object's spec, of the stage's known good and
of every promoted version, as far as they still run); everything of the stage's inventory becomes a
prune candidate (``controller.engine.prune``): a delete awaiting a person's approval, applied once
approved, and dropped from the inventory then. ``pipectl plan`` and ``pipectl approve
--destructive`` see the same plan through ``plan_stage`` (``controller.engine.manual.preview``).
"""

from __future__ import annotations

from controller.engine.executor import ApplyReport
from controller.engine.reconciler import Reconciler
from controller.model.manifest import PipelineRelease
from controller.plan.actions import Plan
from controller.plan.desired import RolloutInputs, StageContext, stage_context
from controller.rollout.deletion import StageTeardown, teardown_release
from controller.source.validate import RepoSnapshot
from controller.store.destructive import Inventory

__all__ = ["plan_stage", "run", "stages_of"]

KIND = "reconcile"
"""The run kind of a teardown's audit records: the controller's pass, towards the empty release."""


def stages_of(rec: Reconciler, snap: RepoSnapshot, name: str) -> list[str]:
    """The stages to tear down: the object's (its status's when the object is invalid) that an
    environment still defines."""
    if name in snap.releases:
        stages = list(snap.release(name).spec.rollout.stages)
    else:
        stages = list(rec.load_status(name).stages)
    return [s for s in stages if s in snap.environments]


def _empty(rec: Reconciler, snap: RepoSnapshot, name: str) -> PipelineRelease:
    version = snap.release(name).spec.version if name in snap.releases else rec.load_status(name).version
    return teardown_release(name, version or "0.0.0", stages_of(rec, snap, name) or ["none"])


def _jobs(rec: Reconciler, snap: RepoSnapshot, name: str, stage: str, ctx: StageContext) -> list[str]:
    """Every streaming job name the release may run at the stage (stopped if still running)."""
    ops = rec.ops
    manifests = [snap.release(name)] if name in snap.releases else []
    for held in (stage, ctx.canary_of):
        kg = ops.known_good(name, held) if held else None
        if kg is not None:
            manifests.append(kg[0])
    for entry in ops.rollouts.history(name).versions.values():
        manifests.append(PipelineRelease.model_validate_json(entry.manifest))
    names: list[str] = []
    for m in manifests:
        for job in ops.rollback_jobs(m, ctx, m.spec.version):
            if job not in names:
                names.append(job)
    return names


def _converge(
    rec: Reconciler, snap: RepoSnapshot, name: str, stage: str, apply: bool
) -> tuple[Plan, ApplyReport | None]:
    envs = {n: snap.environment(n) for n in snap.environments}
    ctx = stage_context(stage, envs)
    jobs = _jobs(rec, snap, name, stage, ctx)
    empty = _empty(rec, snap, name)
    return rec.ops.converge(
        empty, stage, ctx, RolloutInputs(), snap.commit, KIND, delete_jobs=jobs, apply=apply
    )


def plan_stage(rec: Reconciler, snap: RepoSnapshot, name: str, stage: str) -> Plan:
    """The teardown plan of one stage (nothing applied): what ``pipectl plan`` shows and what an
    approval is checked against."""
    return _converge(rec, snap, name, stage, apply=False)[0]


def run(rec: Reconciler, snap: RepoSnapshot, name: str) -> list[StageTeardown]:
    """Converge every stage of ``name`` to nothing (applying approved deletes and job stops)."""
    out = []
    for stage in reversed(stages_of(rec, snap, name)):  # the last stage (prod) first
        plan, report = _converge(rec, snap, name, stage, apply=True)
        errors = [f"{a.id}: refused ({a.reason})" for a in plan.refused]
        outcomes = report.outcomes if report is not None else []
        errors += [f"{o.action.id}: {o.message or o.state}" for o in outcomes if o.state == "failed"]
        out.append(StageTeardown(
            stage=stage,
            pending=tuple(a.id for a in plan.pending),
            left=tuple(sorted(Inventory(rec.store).get(name, stage).entries)),
            errors=tuple(errors),
            changed=any(o.state != "skipped" for o in outcomes) or bool(report and report.interrupted),
        ))
    return out
