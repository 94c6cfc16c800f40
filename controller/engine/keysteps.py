"""Key-subset canary serving in the engine: after the gates pass at the stage that serves a
release's views, move the serving view to the next step of ``keys.steps`` instead of promoting
(``controller.rollout.keysteps`` decides, pure); promotion comes after the gates pass at 100 %.

A step of keys of one column reads the stable version's distinct keys first (``stable_keys``, one
Presto query) and lists exactly its share of them (``plan.keysplit.pick_keys``). The step is
written to the stage's rollout document first, then the stage is converged onto it
(the deploy's own converge renders the view from the document every pass), so a crash between the
two resumes at the same step. A failed gate drops the step: the view serves every key from the
stable version again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from controller.engine.backends import SqlPort, StagePorts
from controller.engine.passes import Pass, StatusWriter
from controller.engine.stage_ops import Baseline, StageOps
from controller.model.canary_keys import CanaryKeys
from controller.model.identifiers import presto_string_literal, quote_presto
from controller.model.manifest import PipelineRelease
from controller.model.reasons import Phase, Reason
from controller.plan.desired import StageContext, job_name, physical_table, table_catalogs
from controller.plan.keysplit import MAX_LISTED_KEYS, KeyStep, key_sql
from controller.plan.resources import TIME_COLUMN, ViewSegment
from controller.rollout import bluegreen, keysteps
from controller.store.rollout import StageRollout

STEP_REQUEUE = 10.0


def keys_at(p: Pass, ctx: StageContext, base: Baseline) -> CanaryKeys | None:
    """The release's canary keys when this stage steps them: it serves views, and the new version
    runs beside a known good one (the first version has nothing to share keys with)."""
    if ctx.is_canary or not base.blue_green or base.version is None or not p.rel.spec.views:
        return None
    return keysteps.canary_keys(p.rel)


def switched_segments(
    p: Pass, ctx: StageContext, blue_version: str, state: StageRollout, now: datetime
) -> dict[str, list[ViewSegment]]:
    """The view segments once the new version serves (blue's rows before its cutover minute):
    the key step's recorded ones while keys are split, else computed as blue/green does."""
    rel = p.rel
    if state.key_step is not None and state.key_step.version == p.version:
        return {v: list(s) for v, s in state.key_step.segments.items()}
    starts = [
        pos.start_time
        for j in rel.spec.streaming_jobs
        if (pos := state.start_offsets.get(job_name(ctx, rel.name, j, p.version))) is not None
    ]
    views = [
        (
            v.name,
            physical_table(ctx, rel, v.table, blue_version),
            physical_table(ctx, rel, v.table, p.version),
        )
        for v in rel.spec.views
    ]
    return bluegreen.next_segments(state.segments, views, bluegreen.cutover(starts, now))


def stable_keys(
    presto: SqlPort, ctx: StageContext, rel: PipelineRelease, version: str, columns: Sequence[str]
) -> list[str]:
    """The distinct keys (``keysplit.key_sql`` text) of the stable version's tables behind the
    release's views, at most one more than ``MAX_LISTED_KEYS`` (more: the step uses buckets)."""
    tables = dict.fromkeys(physical_table(ctx, rel, v.table, version) for v in rel.spec.views)
    catalogs = table_catalogs(ctx, rel, version)
    key = key_sql(columns)
    parts = []
    for table in tables:
        db, name = table.split(".", 1)
        ref = ".".join(quote_presto(x) for x in (catalogs.get(table, presto.catalog), db, name))
        parts.append(f"SELECT {key} AS k FROM {ref}")  # noqa: S608 - quoted identifiers only
    sql = f"SELECT DISTINCT k FROM ({' UNION ALL '.join(parts)}) LIMIT {MAX_LISTED_KEYS + 1}"  # noqa: S608
    return [str(r[0]) for r in presto.query(sql, op="key_step_keys")]


def canary_served(presto: SqlPort, step: KeyStep, catalogs: Mapping[str, str]) -> bool:
    """Whether every view's canary side has rows from its cutover on (one ``LIMIT 1`` per table):
    the view serves the new version's rows. ``catalogs``: ``plan.desired.table_catalogs``."""
    for segs in step.segments.values():
        seg = segs[-1]
        db, name = seg.table.split(".", 1)
        ref = ".".join(quote_presto(x) for x in (catalogs.get(seg.table, presto.catalog), db, name))
        where = ""
        if seg.since is not None:
            where = f" WHERE {quote_presto(TIME_COLUMN)} >= TIMESTAMP {presto_string_literal(seg.since)}"
        if not presto.query(f"SELECT 1 FROM {ref}{where} LIMIT 1", op="key_step_served"):  # noqa: S608
            return False
    return True


@dataclass
class KeySteps:
    ops: StageOps
    writer: StatusWriter
    clock: Callable[[], datetime]

    def advance(
        self, p: Pass, stage: str, ctx: StageContext, be: StagePorts, base: Baseline, keys: CanaryKeys
    ) -> bool:
        """After the gates passed: True when the view moved to (or stays at) a step and gates run
        again later; False when the last step passed and the release is to be promoted."""
        assert base.version is not None
        rel, now = p.rel, self.clock()
        state = self.ops.rollouts.stage(rel.name, stage)
        if keysteps.needs_served_check(state.key_step, p.version):
            assert state.key_step is not None
            served = canary_served(be.presto, state.key_step, table_catalogs(ctx, rel, p.version))
            held = keysteps.served_hold(state.key_step, served, now)
            if held.state is not None:
                state.key_step = held.state
                self.ops.rollouts.put_stage(rel.name, stage, state)
            self.writer.set(p, stage, Phase.VERIFYING, Reason.VERIFYING, held.message)
            p.result.requeue(STEP_REQUEUE)
            return True
        paused = keysteps.pause_hold(state.key_step, keys, p.version, now)
        if paused is not None:
            self.writer.set(p, stage, Phase.VERIFYING, Reason.VERIFYING, paused.message)
            p.result.requeue(min(STEP_REQUEUE, paused.wait))
            return True
        canary = switched_segments(p, ctx, base.version, state, now)
        present = None
        if keysteps.lists_keys(state.key_step, keys, p.version):
            present = stable_keys(be.presto, ctx, rel, base.version, keys.columns)
        decision = keysteps.after_gates_passed(state.key_step, keys, p.version, canary, now, present)
        if decision.promote or decision.state is None:
            return False
        state.key_step = decision.state
        self.ops.rollouts.put_stage(rel.name, stage, state)  # the intent, before the view moves
        inputs = self.ops.deploy_inputs(rel, stage, ctx, base)
        upstream = self.ops.served_upstream(p.upstream, stage)
        _, report = self.ops.converge(rel, stage, ctx, inputs, p.commit, "apply", upstream=upstream)
        p.result.changed = True
        if report is not None and (report.failed or report.waiting):
            msg = "key step failed: " + "; ".join(o.message for o in report.failed or report.waiting)
            self.writer.set(p, stage, Phase.VERIFYING, Reason.VERIFYING, msg)
            p.result.requeue(STEP_REQUEUE)
            return True
        self.ops.store.add_event(rel.name, stage, "Normal", "KeyStep", decision.message)
        self.writer.set(p, stage, Phase.VERIFYING, Reason.VERIFYING, decision.message + "; gates run again")
        p.result.requeue(STEP_REQUEUE)
        return True

    def drop(self, p: Pass, stage: str) -> bool:
        """A failed gate: forget the step (the view serves every key from the stable version once
        the stage converges). True when there was one."""
        state = self.ops.rollouts.stage(p.name, stage)
        if state.key_step is None:
            return False
        state.key_step = None
        self.ops.rollouts.put_stage(p.name, stage, state)
        return True
