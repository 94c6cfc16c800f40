"""What the reconciler does for each ``Step`` of ``rollout.stages.plan_steps``, one method each.

- in sync: repair drift at the stage's version; once a blue/green bake is over, stop blue;
- deploy: converge the active stage to the new version (blue/green: green beside blue, the serving
  view still on blue), soak, then hand over to ``Verdicts`` for gates, promotion or rollback;
- hold: keep a stage on its last known good version (after a rollback: the failed one stopped);
  a canary whose target rolled its version back holds the target's known good instead.

No step sleeps: a wait (a job soaking, Airflow parsing a new DAG file, in-flight runs draining) is a
``requeue_after`` on the pass result.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from controller.engine.analysis import Analysis
from controller.engine.backends import StagePorts, progress_view
from controller.engine.executor import ApplyReport
from controller.engine.maintenance import Maintenance
from controller.engine.passes import Pass, StatusWriter
from controller.engine.stage_ops import Baseline, StageOps
from controller.engine.verdicts import Verdicts
from controller.model.errors import ErrorClass
from controller.model.manifest import PipelineRelease, parse_duration
from controller.model.reasons import Phase, Reason
from controller.obs import metrics
from controller.plan.actions import Plan
from controller.plan.desired import VERSIONED_STRATEGIES, StageContext, job_name, topic_name
from controller.plan.resources import ResourceKind, StreamingJobResource
from controller.rollout import bluegreen, inplace
from controller.rollout.health import soak_wait
from controller.source.revision import revision
from controller.store.rollout import InPlaceStart, RecordedRevision, StartPosition

TRANSIENT_RETRY = 15.0
TERMINAL_RETRY = 60.0
WAIT_RETRY = 2.0


def refusals(plan: Plan) -> str:
    return "; ".join(f"{a.kind} {a.name}: {a.reason} [{a.reason_code}]" for a in plan.refused)


@dataclass
class Steps:
    ops: StageOps
    writer: StatusWriter
    verdicts: Verdicts
    clock: Callable[[], datetime]
    bake_seconds: float = 60.0
    soak_timeout: float = 600.0
    analysis: Analysis | None = None
    maintenance: Maintenance | None = None

    # --- in sync -------------------------------------------------------------------------------

    def in_sync(self, p: Pass, stage: str) -> None:
        ctx = p.ctx(stage)
        st = p.stage(stage)
        inputs, stop_blue, baking = self.ops.sync_inputs(p.rel, stage, ctx, st, self.bake_seconds)
        if baking:
            p.result.requeue(5.0)
        plan, report = self.ops.converge(
            p.rel,
            stage,
            ctx,
            inputs,
            p.commit,
            "reconcile",
            upstream=self.ops.served_upstream(p.upstream, stage),
            delete_jobs=stop_blue,
        )
        # drift: what the live state of a stage already at its version differs in (repaired now)
        metrics.set_drift(p.name, stage, len([a for a in plan.actions if a.name not in stop_blue]))
        if plan.refused:
            self.writer.set(p, stage, Phase.FAILED, Reason.PLAN_REFUSED, refusals(plan))
            return
        if report is not None:
            p.result.changed = True
            if self._background_outcome(p, report):
                return
        if stop_blue:
            st.previous_version = None
            self.ops.store.add_event(
                p.name, stage, "Normal", "BakeComplete", f"stopped blue: {', '.join(stop_blue)}"
            )
        if self.analysis is not None:
            self.analysis.watch(p, stage, ctx)
        if self.maintenance is not None:
            self.maintenance.run(p, stage, ctx)

    def _background_outcome(self, p: Pass, report: ApplyReport) -> bool:
        """A stage kept in place (in sync, held): waits requeue soon, failures back off."""
        if report.waiting:
            p.result.requeue(min(o.retry_after or WAIT_RETRY for o in report.waiting))
        if report.failed:
            p.result.errors += [o.message for o in report.failed]
            p.result.requeue(30.0)
        return bool(report.failed or report.waiting)

    # --- hold known good -----------------------------------------------------------------------

    def hold(self, p: Pass, stage: str, stop_version: str | None = None, good_of: str | None = None) -> None:
        """Keep the stage on its last known good version (and, after a rollback, the failed one
        stopped); ``good_of``: hold that stage's known good instead (a canary's target's)."""
        ctx = p.ctx(stage)
        kg = self.ops.known_good(p.name, good_of or stage)
        stop = self.ops.versioned_jobs(p.rel, ctx, stop_version) if stop_version else []
        if kg is not None and stop_version is not None and kg[0].spec.version == stop_version:
            stop = []
        if kg is None:
            if stop:  # nothing was ever good here: only make sure the failed version is not running
                self.ops.delete_jobs(p.rel, stage, ctx, stop)
            return
        good, commit = kg
        plan, report = self.ops.converge(
            good, stage, ctx, self.ops.hold_inputs(good, stage, ctx), commit, "reconcile", delete_jobs=stop
        )
        metrics.set_drift(p.name, stage, len([a for a in plan.actions if a.name not in stop]))
        if report is not None:
            self._background_outcome(p, report)

    def hold_target(self, p: Pass, stage: str, why: str) -> None:
        """A canary whose target rolled back (or failed) the version the canary runs: stop that
        version in the target's namespace and hold the target's known good, which becomes the
        canary's known good too, so a later canary rollback restores what the target runs and never
        the version the target rejected. Idempotent: once held, a pass changes nothing."""
        target = p.ctx(stage).canary_of
        version = p.stage(stage).version
        if target is None or version is None:
            return
        self.hold(p, stage, stop_version=version, good_of=target)
        kg = self.ops.store.known_good(p.name, target)
        own = self.ops.store.known_good(p.name, stage)
        if kg is not None and (own is None or own["version"] != kg["version"]):
            self.ops.set_known_good(p.name, stage, kg["version"], kg["commit"], kg["manifest"])
        held = f"{target}'s known good {kg['version']}" if kg else f"nothing ({target} has no known good)"
        msg = f"{why}: {version} stopped here, holding {held} until a new version"
        self.writer.set(p, stage, Phase.ROLLED_BACK, Reason.TARGET_ROLLED_BACK, msg)

    # --- deploy --------------------------------------------------------------------------------

    def deploy(self, p: Pass, stage: str) -> None:
        ctx = p.ctx(stage)
        st = p.stage(stage)
        if st.version != p.version or st.phase not in (Phase.PROGRESSING, Phase.VERIFYING):
            self.writer.set(
                p,
                stage,
                Phase.PROGRESSING,
                Reason.PROGRESSING,
                f"deploying {p.version}",
                version=p.version,
                commit=p.commit,
                gates=[],
            )
        rev = revision(p.rel, p.snap.root)
        self.ops.rollouts.record_revision(
            p.name,
            p.version,
            RecordedRevision(digest=rev.digest, files=rev.files, commit=p.commit, stage=stage),
        )
        base = self.ops.baseline(p.rel, stage, ctx)
        root, _ = self.ops.reader_for(p.commit)
        be = self.ops.backends(ctx, root)
        if base.blue_green and base.version is not None:
            self.record_green_starts(p.rel, stage, ctx, be, base.version)
        self.record_inplace_starts(p.rel, stage, ctx, be)
        metrics.set_drift(p.name, stage, 0)  # the active stage's changes are the rollout, not drift
        inputs = self.ops.deploy_inputs(p.rel, stage, ctx, base)
        upstream = self.ops.served_upstream(p.upstream, stage)
        plan, report = self.ops.converge(p.rel, stage, ctx, inputs, p.commit, "apply", upstream=upstream)
        if plan.refused:
            self.verdicts.refused(p, stage, plan)
            return
        if report is not None:
            p.result.changed = True
            if self._deploy_outcome(p, stage, report) or report.interrupted:
                return
        soaking = self.soaking(p, stage, ctx, be, base)
        if soaking:
            self.writer.set(p, stage, Phase.VERIFYING, Reason.VERIFYING, f"soaking: {soaking}")
            p.result.requeue(5.0)
            return
        self.verdicts.judge(p, stage, ctx, be, base)

    def _deploy_outcome(self, p: Pass, stage: str, report: ApplyReport) -> bool:
        """Status after applying the active stage's plan; True when the pass stops here."""
        if report.failed:
            msg = "; ".join(f"{o.action.id}: {o.message}" for o in report.failed)
            classes = {o.error_class for o in report.failed}
            if classes <= {ErrorClass.TRANSIENT}:
                reasons = {o.transient_reason for o in report.failed if o.transient_reason}
                reason = reasons.pop() if len(reasons) == 1 else Reason.BACKEND_UNAVAILABLE
                self.writer.set(p, stage, Phase.PROGRESSING, reason, msg)
                p.result.requeue(min(o.retry_after or TRANSIENT_RETRY for o in report.failed))
            else:
                config = ErrorClass.CONFIGURATION in classes
                reason = Reason.CONFIGURATION_ERROR if config else Reason.APPLY_FAILED
                self.writer.set(p, stage, Phase.FAILED, reason, msg)
                p.result.requeue(TERMINAL_RETRY)
            return True
        if report.waiting:
            msg = "; ".join(o.message for o in report.waiting)
            reasons = {o.transient_reason for o in report.waiting if o.transient_reason}
            reason = reasons.pop() if len(reasons) == 1 else Reason.AWAITING_BACKEND
            self.writer.set(p, stage, Phase.PROGRESSING, reason, msg)
            p.result.requeue(min(o.retry_after or WAIT_RETRY for o in report.waiting))
            return True
        return False

    # --- blue/green and soak -------------------------------------------------------------------

    def record_green_starts(
        self, rel: PipelineRelease, stage: str, ctx: StageContext, be: StagePorts, baseline_version: str
    ) -> None:
        """Persist, once per green job, where it starts: blue's position minus the replay window.
        A canary's green is its target's (``StageOps.start_offsets``): recorded in the target's document."""
        doc = ctx.canary_of or stage
        state = self.ops.rollouts.stage(rel.name, doc)
        added = False
        for job in rel.spec.streaming_jobs:
            green = job_name(ctx, rel.name, job, rel.spec.version)
            if job.strategy not in VERSIONED_STRATEGIES or green in state.start_offsets:
                continue
            blue = job_name(ctx, rel.name, job, baseline_version)
            progress = progress_view(be.spark.progress(blue))
            start = bluegreen.green_start_time(
                self.clock(), bluegreen.watermark_of(progress), parse_duration(job.replay_window)
            )
            topics = [topic_name(ctx, s.topic) for s in job.sources]
            at_time = {t: be.kafka.offsets_for_times(t, int(start.timestamp() * 1000)) for t in topics}
            ends = {t: be.kafka.end_offsets(t) for t in topics}
            blue_done = progress.source_end_offsets if progress is not None else {}
            offsets = bluegreen.green_start_offsets(at_time, ends, blue_done)
            state.start_offsets[green] = StartPosition(offsets=_compact(offsets), start_time=start, blue=blue)
            added = True
        if added:
            self.ops.rollouts.put_stage(rel.name, doc, state)

    def record_inplace_starts(
        self, rel: PipelineRelease, stage: str, ctx: StageContext, be: StagePorts
    ) -> None:
        """Persist, before the new version replaces an in-place job that runs another version,
        where the new version starts reading (``rollout.inplace.start_offsets``): the old job's
        committed position. Once per (job, version); a job not live yet has nothing to restore."""
        state = self.ops.rollouts.stage(rel.name, stage)
        todo = {
            n: j
            for n, j in self.ops.inplace_jobs(rel, ctx).items()
            if (rec := state.inplace_starts.get(n)) is None or rec.version != rel.spec.version
        }
        if not todo:
            return
        live = be.spark.observe(ResourceKind.STREAMING_JOB, list(todo))
        added = False
        for name, job in todo.items():
            old = live.get(name)
            if not isinstance(old, StreamingJobResource) or old.version == rel.spec.version:
                continue
            progress = progress_view(be.spark.progress(name))
            committed = progress.source_end_offsets if progress is not None else {}
            ends = {t: be.kafka.end_offsets(t) for t in (topic_name(ctx, s.topic) for s in job.sources)}
            offsets = _compact(inplace.start_offsets(committed, ends))
            state.inplace_starts[name] = InPlaceStart(
                version=rel.spec.version, offsets=offsets, checkpoint=old.checkpoint, recorded_at=self.clock()
            )
            added = True
        if added:
            self.ops.rollouts.put_stage(rel.name, stage, state)

    def soaking(self, p: Pass, stage: str, ctx: StageContext, be: StagePorts, base: Baseline) -> str:
        """Why gates should wait: a new job that has not run a few batches with input yet, or (blue/
        green outside canary) a green whose watermark has not caught up with blue's. Bounded by
        ``soak_timeout`` from the stage's last transition."""
        since = p.stage(stage).last_transition_time
        if since is not None and (self.clock() - since).total_seconds() > self.soak_timeout:
            return ""
        rel = p.rel
        state = self.ops.rollouts.stage(rel.name, stage)
        waiting = []
        for job in rel.spec.streaming_jobs:
            name = job_name(ctx, rel.name, job, rel.spec.version)
            if name in state.soaked:
                continue
            progress = progress_view(be.spark.progress(name))
            wait = soak_wait(progress, name)
            if not wait and base.blue_green and base.version and job.strategy in VERSIONED_STRATEGIES:
                if not ctx.is_canary:
                    blue = progress_view(be.spark.progress(job_name(ctx, rel.name, job, base.version)))
                    tol = timedelta(seconds=parse_duration(job.trigger))
                    behind = bluegreen.catch_up_wait(
                        bluegreen.watermark_of(progress), bluegreen.watermark_of(blue), tol
                    )
                    wait = f"{name} catching up: {behind}" if behind else ""
            if wait:
                waiting.append(wait)
            elif progress is not None:
                state.soaked[name] = progress.timestamp
                self.ops.rollouts.put_stage(rel.name, stage, state)
        return "; ".join(waiting)


def _compact(offsets: dict[str, dict[str, int]]) -> str:
    return json.dumps(offsets, sort_keys=True, separators=(",", ":"))
