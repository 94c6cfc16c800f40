"""After the active stage has converged and soaked: evaluate its gates, then promote (switch the
serving view to green, record the known good) or roll back (start restoring the known good and
stopping the failed version: ``engine.restore``, which may take later passes). Each outcome is an
audit record, an operational event and one history row.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from controller.audit.ledger import GateVerdict
from controller.audit.records import RunFacts
from controller.engine.backends import StagePorts
from controller.engine.gate_request import GateRequest, GateRunner
from controller.engine.keysteps import KeySteps, keys_at, switched_segments
from controller.engine.passes import Pass, StatusWriter
from controller.engine.restore import RESTORE_DEADLINE, Restorer, history_row, refusals
from controller.engine.stage_ops import Baseline, StageOps
from controller.model.reasons import Phase, Reason, Verdict
from controller.model.status import GateResult
from controller.obs import metrics
from controller.obs.events import EventType
from controller.obs.logging import redact
from controller.plan.actions import Plan
from controller.plan.desired import StageContext, job_name, physical_table, stage_context, table_catalogs
from controller.plan.keysplit import KeyFilter
from controller.rollout.stages import judge
from controller.store.rollout import PromotedVersion, RestoreIntent, StageRollout


@dataclass
class Verdicts:
    ops: StageOps
    writer: StatusWriter
    gates: GateRunner
    clock: Callable[[], datetime]
    verify_interval: float = 10.0
    on_promoted: Callable[[Pass, str, Baseline, StageRollout], None] | None = None
    """Post-promotion analysis records what the stage ran before (``engine.analysis``)."""
    restore_deadline: float = RESTORE_DEADLINE
    restorer: Restorer = field(init=False)
    keys: KeySteps = field(init=False)

    def __post_init__(self) -> None:
        self.restorer = Restorer(self.ops, self.writer, self.clock, self.restore_deadline)
        self.keys = KeySteps(self.ops, self.writer, self.clock)

    def refused(self, p: Pass, stage: str, plan: Plan) -> None:
        msg = refusals(plan)
        self.writer.set(p, stage, Phase.FAILED, Reason.PLAN_REFUSED, msg)
        now = self.clock()
        run = RunFacts("apply", uuid.uuid4().hex, p.commit, "refused", now, now, self.ops.instance, plan)
        run.message, run.reason = msg, Reason.PLAN_REFUSED
        self.ops.audit(p.rel, stage, run)

    # --- gates ---------------------------------------------------------------------------------

    def evaluate(
        self,
        p: Pass,
        stage: str,
        ctx: StageContext,
        be: StagePorts,
        base: Baseline,
        only: frozenset[str] | None = None,
    ) -> list[GateVerdict]:
        rel, version = p.rel, p.version
        applies = [
            g
            for g in rel.spec.rollout.gates
            if (g.stages is None or stage in g.stages) and (only is None or g.name in only)
        ]
        if not applies:
            return []
        baseline_tables: dict[str, str] = {}
        catalogs = table_catalogs(ctx, rel, version)
        if base.blue_green and base.release is not None and base.version is not None:
            target = stage_context(base.stage, p.envs)
            baseline_tables = {
                t.name: physical_table(target, base.release, t.name, base.version)
                for t in base.release.spec.tables
            }
            catalogs.update(table_catalogs(target, base.release, base.version))
        _root, read = self.ops.reader_for(p.commit)
        schema_texts = {}
        for s in rel.spec.schemas:
            try:
                schema_texts[s.name] = read(s.path).decode("utf-8")
            except OSError:
                pass
        req = GateRequest(
            release=rel,
            stage=stage,
            ctx=ctx,
            backends=be,
            tables={t.name: physical_table(ctx, rel, t.name, version) for t in rel.spec.tables},
            jobs={j.name: job_name(ctx, rel.name, j, version) for j in rel.spec.streaming_jobs},
            baseline_tables=baseline_tables,
            baseline_version=base.version if base.blue_green else None,
            schema_texts=schema_texts,
            now=self.clock(),
            only=only,
            canary_keys=self._canary_keys(p, stage),
            catalogs=catalogs,
        )
        # a gate's message may quote an error holding a secret: redacted before status, events, audit
        return [v.model_copy(update={"message": redact(v.message)}) for v in self.gates.evaluate(req)]

    def _canary_keys(self, p: Pass, stage: str) -> KeyFilter | None:
        """The keys a key-subset canary of this version serves at this stage, if it is stepping."""
        step = self.ops.rollouts.stage(p.name, stage).key_step
        if step is None or step.version != p.version:
            return None
        return tuple(step.columns), step.percent if step.keys is None else tuple(step.keys)

    def judge(self, p: Pass, stage: str, ctx: StageContext, be: StagePorts, base: Baseline) -> None:
        self.writer.set(p, stage, Phase.VERIFYING, Reason.VERIFYING, "evaluating gates")
        verdicts = self._time_out(p, stage, self.evaluate(p, stage, ctx, be, base))
        for v in verdicts:
            metrics.record_gate_result(v.name, str(v.verdict))
            self.ops.emit(
                EventType.GATE,
                p.rel,
                stage,
                git_commit=p.commit,
                reason=str(v.verdict),
                message=v.message,
                detail={"gate": v.name, "type": v.type, "verdict": str(v.verdict), "message": v.message},
            )
        p.stage(stage).gates = [
            GateResult(name=v.name, type=v.type, verdict=Verdict(v.verdict), message=v.message)
            for v in verdicts
        ]
        waiting = [v for v in verdicts if Verdict(v.verdict) is Verdict.INCONCLUSIVE]
        unavailable = [b for v in waiting for b in v.evidence.get("unavailable", ())]
        outcome = judge(
            [(v.name, Verdict(v.verdict), v.message) for v in verdicts],
            p.rel.spec.rollout.rollback.automatic,
            unavailable,
        )
        if outcome.phase is Phase.VERIFYING:
            self.writer.set(p, stage, Phase.VERIFYING, outcome.reason, outcome.message)
            p.result.requeue(self.verify_interval)
            return
        run_id = uuid.uuid4().hex
        now = self.clock()
        passed = outcome.phase is Phase.SUCCEEDED
        run = RunFacts(
            "gate", run_id, p.commit, "passed" if passed else "failed", now, now, self.ops.instance
        )
        run.gates = verdicts
        self.ops.audit(p.rel, stage, run, ctx, upstream=self.ops.served_upstream(p.upstream, stage))
        restoring = False
        keys = keys_at(p, ctx, base)
        if passed and keys is not None and self.keys.advance(p, stage, ctx, be, base, keys):
            pass  # the view moved to the next step of a key-subset canary; gates run again there
        elif passed:
            self.promote(p, stage, ctx, base, outcome.message)
            p.result.requeue(0.0)
        else:
            restoring = self.rollback(p, stage, ctx, outcome.phase, outcome.message, verdicts, run_id)
        p.result.changed = True
        if not restoring:  # a restore writes the attempt's row when it ends
            self._history_row(p, stage, run_id, verdicts)

    def _time_out(self, p: Pass, stage: str, verdicts: list[GateVerdict]) -> list[GateVerdict]:
        """An inconclusive gate past its ``inconclusiveTimeout`` counts as failed. Time the gate
        spent unable to reach its backend (``evidence["unavailable"]``) does not count: an outage
        of Presto or Kafka says nothing against the version, so the stage waits, named
        BackendUnavailable, and the gate's clock starts again when the backend answers."""
        state = self.ops.rollouts.stage(p.name, stage)
        if state.judged_version != p.version:
            state.judged_version, state.inconclusive_since = p.version, {}
        now = self.clock()
        gates = {g.name: g for g in p.rel.spec.rollout.gates}
        out = []
        for v in verdicts:
            if Verdict(v.verdict) is not Verdict.INCONCLUSIVE:
                state.inconclusive_since.pop(v.name, None)
                out.append(v)
                continue
            if v.evidence.get("unavailable"):
                state.inconclusive_since[v.name] = now
                out.append(v)
                continue
            since = state.inconclusive_since.setdefault(v.name, now)
            limit = gates[v.name].inconclusive_timeout_seconds() if v.name in gates else None
            if limit is not None and (now - since).total_seconds() > limit:
                waited = (now - since).total_seconds()
                msg = f"inconclusive for {waited:.0f}s (inconclusiveTimeout {limit:g}s): {v.message}"
                v = v.model_copy(update={"verdict": str(Verdict.FAIL), "message": msg})
            out.append(v)
        self.ops.rollouts.put_stage(p.name, stage, state)
        return out

    def _history_row(self, p: Pass, stage: str, run_id: str, verdicts: list[GateVerdict]) -> None:
        """One history row per attempt: the version, where, what came of it and every gate's verdict."""
        rows = [
            {"name": v.name, "type": v.type, "verdict": str(v.verdict), "message": v.message}
            for v in verdicts
        ]
        history_row(self.ops.store, run_id, p, stage, p.version, p.commit, rows)

    # --- promote -------------------------------------------------------------------------------

    def promote(self, p: Pass, stage: str, ctx: StageContext, base: Baseline, message: str) -> None:
        started = self.clock()
        before = self.ops.rollouts.stage(p.name, stage)
        switched = False
        if base.blue_green and not ctx.is_canary and p.rel.spec.views and base.version is not None:
            if not self._switch_views(p, stage, ctx, base.version):
                return
            switched = True
        rel = p.rel
        manifest = rel.model_dump_json(by_alias=True)
        _root, read = self.ops.reader_for(p.commit)
        schemas = {}
        for s in rel.spec.schemas:
            try:
                schemas[s.name] = read(s.path).decode("utf-8")
            except OSError:
                pass
        self.ops.rollouts.record_promoted(rel.name, p.version, p.commit, manifest, schemas)
        if self.on_promoted is not None:
            self.on_promoted(p, stage, base, before)
        self.ops.set_known_good(rel.name, stage, p.version, p.commit, manifest)
        st = p.stage(stage)
        if switched:
            st.previous_version = base.version
            st.switched_at = self.clock()
        note = f"; serving view switched from {base.version}" if switched else ""
        self.writer.set(p, stage, Phase.SUCCEEDED, Reason.RECONCILIATION_SUCCEEDED, message + note)
        self.ops.emit(
            EventType.PROMOTION,
            rel,
            stage,
            git_commit=p.commit,
            phase=str(Phase.SUCCEEDED),
            message=f"{p.version} promoted at {stage}{note}",
            detail={"from": base.version, "to": p.version},
        )
        now = self.clock()
        run = RunFacts("promotion", uuid.uuid4().hex, p.commit, "succeeded", started, now, self.ops.instance)
        run.message = f"{p.version} promoted at {stage}"
        self.ops.audit(rel, stage, run, tables_at=ctx)

    def _switch_views(self, p: Pass, stage: str, ctx: StageContext, blue_version: str) -> bool:
        """Record the new segments (idempotently), then converge the views onto them."""
        rel = p.rel
        state = self.ops.rollouts.stage(rel.name, stage)
        # a key-subset canary at 100 % already serves these segments: the same rows, now unsplit
        state.segments = switched_segments(p, ctx, blue_version, state, self.clock())
        state.key_step = None
        self.ops.rollouts.put_stage(rel.name, stage, state)
        inputs = self.ops.hold_inputs(rel, stage, ctx)
        upstream = self.ops.served_upstream(p.upstream, stage)
        _, report = self.ops.converge(rel, stage, ctx, inputs, p.commit, "promotion", upstream=upstream)
        if report is not None and (report.failed or report.waiting):
            bad = report.failed or report.waiting
            msg = "view switch failed: " + "; ".join(o.message for o in bad)
            self.writer.set(p, stage, Phase.FAILED, Reason.APPLY_FAILED, msg)
            return False
        return True

    # --- roll back -----------------------------------------------------------------------------

    def rollback(
        self,
        p: Pass,
        stage: str,
        ctx: StageContext,
        phase: Phase,
        message: str,
        verdicts: list[GateVerdict],
        run_id: str | None = None,
    ) -> bool:
        """Start restoring the stage's known good (``engine.restore``; it may take later passes);
        False when the release does not roll back automatically (the stage is Failed instead).
        A key-subset canary's step is dropped first: the view serves every key from the stable
        version again (the restore converges it; a Failed stage on its next deploy)."""
        self.keys.drop(p, stage)
        if phase is not Phase.ROLLED_BACK:
            self.writer.set(p, stage, Phase.FAILED, Reason.GATE_FAILED, message)
            return False
        kg = self.ops.store.known_good(p.name, stage)
        to = None
        if kg is not None and kg["version"] != p.version:
            to = PromotedVersion(commit=kg["commit"], manifest=kg["manifest"])
        intent = RestoreIntent(
            version=p.version,
            failed=PromotedVersion(commit=p.commit, manifest=p.rel.model_dump_json(by_alias=True)),
            to=to,
            failed_jobs=self.ops.rollback_jobs(p.rel, ctx, p.version),
            started_at=self.clock(),
            trigger="gate",
            message=message,
            gates=[v.model_dump(mode="json") for v in verdicts],
            run_id=run_id,
        )
        self.restorer.start(p, stage, intent)
        return True
