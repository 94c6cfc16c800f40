"""A rollback's restore, level-triggered: started once, resumed by later passes, ended once.

``Restorer.start`` records the intent in the stage's rollout document first (what is rolled back,
the known good restored, the failed version's jobs, when it started on the controller's clock),
then makes the first attempt. An attempt converges the known good (stopping the failed jobs) and,
when nothing is left waiting, proves the restore: live state is re-observed and planned against the
known good again, and only an empty plan counts as restored. An in-place job's Iceberg tables go
back with it (``controller.engine.table_restore``): their rollback points are decided and written
into the intent at the start, and each attempt first stops the job and rolls the tables back
before the known good restarts from the points' end offsets.

While a backend has not caught up yet (Airflow parsing the restored DAG file, a job stopping after
its current batch, a transient backend error) the stage is Progressing with reason ``RollingBack``
and the pass asks for a requeue; no pass sleeps. The next pass (``Step.RESTORING``, or a controller
restarted after a crash, from the same document) attempts again. The restore ends exactly once:
``RolledBack`` when live state matches the known good; ``RollbackFailed`` when the plan refuses, an
action fails, a difference is left, or it still waits ``deadline`` seconds after it started. Then,
and only then, the rollback event, audit record and history row are written and the intent cleared.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.audit.ledger import GateVerdict
from controller.audit.records import RunFacts, rollback_details
from controller.engine import table_restore
from controller.engine.backends import SqlPort
from controller.engine.executor import ApplyReport
from controller.engine.passes import Pass, StatusWriter
from controller.engine.stage_ops import StageOps
from controller.model.errors import ErrorClass, PipectlError, error_class
from controller.model.manifest import PipelineRelease
from controller.model.reasons import Phase, Reason
from controller.obs import metrics
from controller.obs.events import EventType
from controller.plan.actions import DiffContext, Plan
from controller.plan.desired import RolloutInputs, StageContext
from controller.plan.planner import make_plan
from controller.plan.resources import ResourceKind
from controller.store.db import Store
from controller.store.rollout import RestoreIntent

RESTORE_DEADLINE = 300.0
"""Seconds (controller clock) a restore may wait for its backends before it ends RollbackFailed."""
WAIT_RETRY = 2.0


def refusals(plan: Plan) -> str:
    return "; ".join(f"{a.kind} {a.name}: {a.reason} [{a.reason_code}]" for a in plan.refused)


def history_row(
    store: Store,
    run_id: str,
    p: Pass,
    stage: str,
    version: str,
    commit: str | None,
    gates: list[dict[str, str]],
) -> None:
    """One history row per gate attempt: the version, where, what came of it, every gate's verdict."""
    final = p.stage(stage)
    store.run_start(run_id, p.name, stage, version, "rollout", commit)
    store.run_end(run_id, str(final.phase), final.reason, final.message or "", gates)


@dataclass
class Attempt:
    """One try at the restore: what did not work ("" if nothing), or what still waits."""

    problem: str = ""
    waiting: str = ""
    retry_after: float = WAIT_RETRY
    proved: list[Any] | None = None
    """Restored: the known good's resources at the stage, each proved live as it wants them."""


@dataclass
class Restorer:
    ops: StageOps
    writer: StatusWriter
    clock: Callable[[], datetime]
    deadline: float = RESTORE_DEADLINE

    def start(self, p: Pass, stage: str, intent: RestoreIntent) -> None:
        """Record the restore (intent first: a crash after this resumes it), then attempt it.
        In-place jobs whose failed version's start was recorded move, in the same write, to a fresh
        checkpoint from those offsets (``StageOps.pin_restarts``), or from where their Iceberg
        tables' rollback points end when every one is exact (``table_restore.decide``)."""
        state = self.ops.rollouts.stage(p.name, stage)
        state.restoring = intent
        if intent.to is not None:
            good = PipelineRelease.model_validate_json(intent.to.manifest)
            failed, ctx = PipelineRelease.model_validate_json(intent.failed.manifest), p.ctx(stage)
            intent.tables = table_restore.decide(good, failed, ctx, state, lambda: self._presto(ctx))
            starts = table_restore.restart_offsets(intent.tables)
            self.ops.pin_restarts(good, ctx, state, intent.version, starts)
        self.ops.rollouts.put_stage(p.name, stage, state)
        self.resume(p, stage)

    def _presto(self, ctx: StageContext) -> SqlPort:
        return self.ops.backends(ctx, None).presto

    def resume(self, p: Pass, stage: str) -> None:
        """Attempt the recorded restore; requeue while it waits, end it otherwise."""
        r = self.ops.rollouts.stage(p.name, stage).restoring
        if r is None:
            return
        good = (PipelineRelease.model_validate_json(r.to.manifest), r.to.commit) if r.to else None
        failed = PipelineRelease.model_validate_json(r.failed.manifest)
        attempt = self._tables(p, stage, failed, r) or self._attempt(
            failed, stage, p.ctx(stage), good, r.failed_jobs
        )
        waited = (self.clock() - r.started_at).total_seconds()
        to = good[0].spec.version if good else "nothing (first version)"
        if attempt.waiting and waited < self.deadline:
            msg = f"{r.message}; rolling back to {to}, waiting: {attempt.waiting}"
            self.writer.set(p, stage, Phase.PROGRESSING, Reason.ROLLING_BACK, msg)
            p.result.requeue(attempt.retry_after)
            return
        problem = attempt.problem
        if attempt.waiting:
            problem = (
                f"still waiting {waited:.0f}s after it started (deadline {self.deadline:g}s): "
                + attempt.waiting
            )
        self._end(p, stage, r, failed, to, problem, attempt.proved)

    def _tables(self, p: Pass, stage: str, failed: PipelineRelease, r: RestoreIntent) -> Attempt | None:
        """Before the known good restarts: stop the jobs whose tables go back, make each table's
        point current, and record it done (``engine.table_restore``). None when nothing is left."""
        todo = table_restore.to_restore(r.tables)
        if not todo:
            return None
        ctx = p.ctx(stage)
        try:
            stopped = _outcome(self.ops.delete_jobs(failed, stage, ctx, sorted({t.job for t in todo})))
            if stopped is not None:  # still stopping (or failed to): no table is touched while it writes
                return stopped
            table_restore.apply(self._presto(ctx), todo)
        except PipectlError as e:
            if error_class(e) is ErrorClass.TRANSIENT:
                return Attempt(waiting=str(e), retry_after=getattr(e, "retry_after", None) or WAIT_RETRY)
            return Attempt(problem=f"rolling tables back: {e}")
        finally:
            state = self.ops.rollouts.stage(p.name, stage)
            if state.restoring is not None:
                state.restoring.tables = r.tables
                self.ops.rollouts.put_stage(p.name, stage, state)
        return None

    def pending(self, p: Pass, stage: str) -> Plan | None:
        """What the restore under way at ``stage`` still has to change (``pipectl plan``/``diff``:
        the plan its next attempt computes), or None when no restore is under way."""
        r = self.ops.rollouts.stage(p.name, stage).restoring
        if r is None:
            return None
        ctx = p.ctx(stage)
        if r.to is not None:
            good = PipelineRelease.model_validate_json(r.to.manifest)
            inputs = self.ops.hold_inputs(good, stage, ctx)
            return self.ops.plan(good, stage, ctx, inputs, r.to.commit, (), r.failed_jobs)[0]
        failed = PipelineRelease.model_validate_json(r.failed.manifest)  # as ``StageOps.delete_jobs``
        root, _ = self.ops.reader_for(None)
        jobs = self.ops.backends(ctx, root).spark.observe(ResourceKind.STREAMING_JOB, r.failed_jobs)
        allow = DiffContext(allow_delete=frozenset(r.failed_jobs), prune=True)
        return make_plan(
            failed.name, failed.spec.version, stage, [], {}, self.clock(), allow, None, list(jobs.values())
        )

    def _attempt(
        self,
        failed: PipelineRelease,
        stage: str,
        ctx: StageContext,
        good: tuple[PipelineRelease, str | None] | None,
        failed_jobs: list[str],
    ) -> Attempt:
        try:
            if good is None:  # nothing was good here: only make sure the failed version is stopped
                report = self.ops.delete_jobs(failed, stage, ctx, failed_jobs) if failed_jobs else None
                return _outcome(report) or Attempt()
            rel, commit = good
            inputs = self.ops.hold_inputs(rel, stage, ctx)
            plan, report = self.ops.converge(
                rel, stage, ctx, inputs, commit, "restore", delete_jobs=failed_jobs
            )
        except PipectlError as e:
            if error_class(e) is ErrorClass.TRANSIENT:
                return Attempt(waiting=str(e), retry_after=getattr(e, "retry_after", None) or WAIT_RETRY)
            return Attempt(problem=str(e))
        if plan.refused:
            return Attempt(problem="refused: " + refusals(plan))
        done = _outcome(report)
        if done is not None:
            return done
        problem = self._still_different(rel, stage, ctx, inputs, commit, failed_jobs)
        if problem:
            return Attempt(problem=problem)
        # the rollback record lists what the proof covered: the plan it found empty was of these
        try:
            return Attempt(proved=self.ops.desired(rel, ctx, inputs, commit))
        except PipectlError:  # proved all the same; only the record's list is lost
            return Attempt()

    def _still_different(
        self,
        good: PipelineRelease,
        stage: str,
        ctx: StageContext,
        inputs: RolloutInputs,
        commit: str | None,
        failed_jobs: list[str],
    ) -> str:
        """Prove the restore: re-observe live state against the known good; what still differs."""
        try:
            plan, _ = self.ops.plan(good, stage, ctx, inputs, commit, (), failed_jobs)
        except PipectlError as e:
            return f"live state could not be re-read: {e}"
        if plan.is_noop:
            return ""
        return "still different after the restore: " + "; ".join(a.describe() for a in plan.actions)

    def _end(
        self,
        p: Pass,
        stage: str,
        r: RestoreIntent,
        failed: PipelineRelease,
        to: str,
        problem: str,
        proved: list[Any] | None = None,
    ) -> None:
        """The restore's one outcome: status, event, rollback record, history row; then forget it."""
        tables_msg, tables_detail = table_restore.summary(r.tables)
        tables_msg = f"; {tables_msg}" if tables_msg else ""
        if problem:
            msg = f"{r.message}; rollback to {to} did not complete: {problem}{tables_msg}"
            self.writer.set(p, stage, Phase.ROLLBACK_FAILED, Reason.ROLLBACK_FAILED, msg)
            metrics.record_reconcile_error(p.name, Reason.ROLLBACK_FAILED)
            outcome, reason = "failed", Reason.ROLLBACK_FAILED
        else:
            if r.record_known_good and r.to is not None:
                self.ops.set_known_good(p.name, stage, to, r.to.commit, r.to.manifest)
            msg = f"{r.message}; restored {to}{tables_msg}"
            metrics.record_rollback(p.name, stage)
            self.writer.set(p, stage, Phase.ROLLED_BACK, Reason.GATE_FAILED, msg)
            outcome, reason = "rolledBack", Reason.GATE_FAILED
        self.ops.emit(
            EventType.ROLLBACK,
            failed,
            stage,
            git_commit=r.failed.commit,
            phase=str(p.stage(stage).phase),
            reason=reason,
            message=msg,
            detail={"from": r.version, "to": None if r.to is None else to, "trigger": r.trigger},
        )
        run_id, now = uuid.uuid4().hex, self.clock()
        run = RunFacts("rollback", run_id, r.failed.commit, outcome, r.started_at, now, self.ops.instance)
        run.gates = [GateVerdict.model_validate(g) for g in r.gates]
        run.message, run.reason = msg, reason
        run.details = rollback_details(
            r.trigger, r.version, None if r.to is None else to, proved, [] if problem else r.failed_jobs
        )
        run.details.update(tables_detail)
        self.ops.audit(failed, stage, run, tables_at=p.ctx(stage))
        if r.run_id is not None:
            rows = [{k: str(g.get(k, "")) for k in ("name", "type", "verdict", "message")} for g in r.gates]
            history_row(self.ops.store, r.run_id, p, stage, r.version, r.failed.commit, rows)
        state = self.ops.rollouts.stage(p.name, stage)
        state.restoring = None
        self.ops.rollouts.put_stage(p.name, stage, state)


def _outcome(report: ApplyReport | None) -> Attempt | None:
    """An apply's failures (permanent: the restore fails) or waits (transient ones too); None if done."""
    if report is None:
        return None
    hard = [o for o in report.failed if o.error_class is not ErrorClass.TRANSIENT]
    if hard:
        return Attempt(problem="; ".join(f"{o.action.id}: {o.message}" for o in hard))
    waits = report.waiting + report.failed
    if waits:
        retry = min(o.retry_after or WAIT_RETRY for o in waits)
        return Attempt(waiting="; ".join(f"{o.action.id}: {o.message}" for o in waits), retry_after=retry)
    return None
