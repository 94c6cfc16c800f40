"""Post-promotion analysis: nothing stops watching a release once it reaches its last stage.

When a version is promoted at the last stage, the stage's rollout document records what it ran
before (manifest, commit, the serving view's segments). For ``rollout.analysis.bake`` after that,
every pass over the in-sync stage evaluates the gates marked ``postPromotion``; a failing one rolls
the stage back to the recorded version (view segments, jobs, DAGs, topics, tables) and proves the
restore as a gate-triggered rollback does (``engine.restore``). After the bake the record is dropped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from controller.audit.records import RunFacts
from controller.engine.passes import Pass, StatusWriter
from controller.engine.stage_ops import Baseline, StageOps
from controller.engine.verdicts import Verdicts
from controller.model.manifest import parse_duration
from controller.model.reasons import Phase, Reason, Verdict
from controller.plan.desired import StageContext
from controller.store.rollout import PostPromotion, PromotedVersion, RestoreIntent, StageRollout


@dataclass
class Analysis:
    ops: StageOps
    writer: StatusWriter
    verdicts: Verdicts
    clock: Callable[[], datetime]

    def record(self, p: Pass, stage: str, base: Baseline, segments_before: StageRollout) -> None:
        """At promotion: remember what the last stage ran before, for the bake."""
        if stage != p.rel.spec.rollout.stages[-1] or not self._gates(p):
            return
        prev = None
        if base.release is not None and base.version != p.version:
            prev = PromotedVersion(commit=base.commit, manifest=base.release.model_dump_json(by_alias=True))
        state = self.ops.rollouts.stage(p.name, stage)
        state.watch = PostPromotion(
            version=p.version,
            promoted_at=self.clock(),
            previous=prev,
            segments_before=segments_before.segments,
        )
        self.ops.rollouts.put_stage(p.name, stage, state)

    def _gates(self, p: Pass) -> frozenset[str]:
        return frozenset(g.name for g in p.rel.spec.rollout.gates if g.post_promotion)

    def watch(self, p: Pass, stage: str, ctx: StageContext) -> None:
        """One look during the bake; a failing postPromotion gate rolls the stage back."""
        if stage != p.rel.spec.rollout.stages[-1] or not self._gates(p):
            return
        state = self.ops.rollouts.stage(p.name, stage)
        w = state.watch
        if w is None or w.version != p.version:
            return
        left = (
            parse_duration(p.rel.spec.rollout.analysis.bake) - (self.clock() - w.promoted_at).total_seconds()
        )
        if left <= 0:
            state.watch = None
            self.ops.rollouts.put_stage(p.name, stage, state)
            self.ops.store.add_event(p.name, stage, "Normal", "AnalysisComplete", f"{p.version} baked")
            return
        p.result.requeue(min(left, self.verdicts.verify_interval))
        none = Baseline(stage, None, None, False)
        be = self.ops.backends(ctx, None)
        verdicts = self.verdicts.evaluate(p, stage, ctx, be, none, only=self._gates(p))
        failed = [v for v in verdicts if Verdict(v.verdict) is Verdict.FAIL]
        if not failed:
            return
        message = "; ".join(f"post-promotion gate {v.name} failed: {v.message}" for v in failed)
        self._roll_back(p, stage, ctx, state, w, message)
        run = RunFacts(
            "gate", uuid.uuid4().hex, p.commit, "failed", self.clock(), self.clock(), self.ops.instance
        )
        run.gates, run.message = verdicts, message
        self.ops.audit(p.rel, stage, run, ctx, upstream=p.upstream)

    def _roll_back(
        self, p: Pass, stage: str, ctx: StageContext, state: StageRollout, w: PostPromotion, message: str
    ) -> None:
        """Start restoring the recorded previous version (``engine.restore``: it may take later
        passes); once restored it is the stage's known good again."""
        state.watch = None
        if w.previous is None:
            self.ops.rollouts.put_stage(p.name, stage, state)
            self.writer.set(
                p, stage, Phase.FAILED, Reason.GATE_FAILED, f"{message}; no earlier version to restore"
            )
            return
        state.segments = w.segments_before  # the serving view goes back to what it read before
        self.ops.rollouts.put_stage(p.name, stage, state)
        st = p.stage(stage)
        st.previous_version, st.switched_at = None, None
        intent = RestoreIntent(
            version=p.version,
            failed=PromotedVersion(commit=p.commit, manifest=p.rel.model_dump_json(by_alias=True)),
            to=w.previous,
            failed_jobs=self.ops.rollback_jobs(p.rel, ctx, p.version),
            started_at=self.clock(),
            trigger="postPromotion",
            message=message,
            record_known_good=True,
        )
        self.verdicts.restorer.start(p, stage, intent)
