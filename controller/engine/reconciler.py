"""One level-triggered pass over one release: read git + live state, converge, verify, promote.

The pass follows controller-runtime's contract: the only input is the release name (plus the
repository snapshot of this pass); everything else is read fresh. Steps per stage come from the
pure ``controller.rollout.stages.plan_steps``:

- in-sync stages are checked for drift and repaired, and a finished blue/green bake stops blue;
- the active stage is converged to the release's version (blue/green: green beside blue, the
  serving view still on blue), its gates are evaluated, and on success the serving view switches
  to green and the version becomes the stage's last known good;
- a failed gate restores the last known good version at that stage without a person
  (automatic rollback), and the version halts there until a new one is committed;
- stages not reached yet are held on their last known good version.

Every step that changes something writes an audit record; status and metrics are written at the
end of the pass whatever happened (Flux's deferred status patch).
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import structlog

from controller.audit.ledger import Artifact, AuditRecord, GateVerdict, Ledger, Lineage, SchemaRef
from controller.engine.backends import BackendsFactory, StageBackends
from controller.engine.executor import ApplyReport, Executor, intent_digest
from controller.model.errors import BackendError, PipectlError, TransientBackendError
from controller.model.manifest import Environment, PipelineRelease, parse_duration
from controller.model.reasons import Phase, Reason, Verdict
from controller.model.status import Condition, GateResult, ReleaseStatus, StageStatus, set_condition
from controller.obs import metrics
from controller.obs.events import EventSink, EventType, make_event
from controller.plan.actions import DiffContext, Plan
from controller.plan.desired import (
    VERSIONED_STRATEGIES,
    RolloutInputs,
    StageContext,
    desired_resources,
    digest,
    job_name,
    physical_table,
    stage_context,
    table_name,
    topic_name,
)
from controller.plan.planner import make_plan
from controller.plan.resources import Resource, ResourceKind, ViewSegment
from controller.plan.transforms import transform_datasets, transform_lineage
from controller.rollout.stages import StageFacts, Step, judge, plan_steps
from controller.source.validate import RepoSnapshot
from controller.store.db import Store

log = structlog.get_logger(__name__)

Reader = Callable[[str], bytes]

# Gates judge a new job after this many micro-batches (the first carry JVM warm-up and report no rates).
MIN_SOAK_BATCHES = 2


class GateRunner(Protocol):
    def evaluate(self, req: GateRequest) -> list[GateVerdict]: ...


@dataclass
class GateRequest:
    release: PipelineRelease
    stage: str
    ctx: StageContext
    backends: StageBackends
    tables: dict[str, str]
    jobs: dict[str, str]
    baseline_tables: dict[str, str]
    baseline_version: str | None
    schema_texts: dict[str, str]
    now: datetime


@dataclass
class Result:
    requeue_after: float | None = None
    changed: bool = False
    errors: list[str] = field(default_factory=list)


def manifest_digest(rel: PipelineRelease) -> str:
    return digest(rel.model_dump_json(by_alias=True).encode())


def watermark_of(progress: Any) -> datetime | None:
    """A job's event-time watermark from its last progress, or None before the first one."""
    raw = getattr(progress, "watermark", None) if progress is not None else None
    if not raw:
        return None
    wm = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    return wm if wm.year > 1970 else None  # Spark reports epoch 0 before the first watermark


def catch_up_wait(green: datetime | None, blue: datetime | None, tolerance: timedelta) -> str:
    """Why a green job is not caught up with blue yet ("" once it is).

    Switching the serving view to green earlier would make dashboards lose the minutes blue has
    closed and green has not, so the switch waits until green's watermark reaches blue's (within
    one trigger interval: the two jobs cut their micro-batches at different instants).
    """
    if blue is None:
        return ""
    if green is None:
        return f"no watermark yet; blue's is {blue:%H:%M:%S}"
    if green + tolerance >= blue:
        return ""
    return f"watermark {green:%H:%M:%S} behind blue's {blue:%H:%M:%S}"


def _ceil_minute(t: datetime) -> datetime:
    base = t.replace(second=0, microsecond=0)
    return base if base == t else base + timedelta(minutes=1)


class Reconciler:
    def __init__(
        self,
        store: Store,
        ledger: Ledger,
        backends: BackendsFactory,
        gates: GateRunner,
        *,
        reader_for: Callable[[str | None], tuple[Path, Reader]],
        instance: str = "pipectl",
        checkpoint_root: str = ".pipectl/checkpoints",
        bake_seconds: float = 60.0,
        verify_interval: float = 10.0,
        soak_timeout: float = 600.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        executor_factory: Callable[[StageBackends], Executor] | None = None,
        on_status: Callable[[str, ReleaseStatus], None] | None = None,
        events: EventSink | None = None,
    ):
        self.store = store
        self.ledger = ledger
        self.backends = backends
        self.gates = gates
        self.reader_for = reader_for
        self.instance = instance
        self.checkpoint_root = str(Path(checkpoint_root).resolve())
        self.bake_seconds = bake_seconds
        self.soak_timeout = soak_timeout
        self.verify_interval = verify_interval
        self.clock = clock
        self.stop = threading.Event()
        self.executor_factory = executor_factory or (lambda be: Executor(store, be.adapters, stop=self.stop))
        self.on_status = on_status
        self.events = events
        self.last_plans: dict[tuple[str, str], Plan] = {}
        self._snap: RepoSnapshot | None = None

    # --- status helpers ------------------------------------------------------------------------

    def load_status(self, name: str) -> ReleaseStatus:
        raw = self.store.get_status(name)
        return ReleaseStatus.model_validate(raw) if raw else ReleaseStatus()

    def _stage(self, status: ReleaseStatus, stage: str) -> StageStatus:
        if stage not in status.stages:
            status.stages[stage] = StageStatus()
        return status.stages[stage]

    def _set(
        self,
        name: str,
        status: ReleaseStatus,
        stage: str,
        phase: Phase,
        reason: str,
        message: str = "",
        version: str | None = None,
        commit: str | None = None,
        gates: list[GateResult] | None = None,
    ) -> None:
        st = self._stage(status, stage)
        changed = st.phase != phase or (version is not None and st.version != version)
        if changed:
            if self.events is not None:
                self.events.emit(
                    make_event(
                        EventType.TRANSITION,
                        release=name,
                        stage=stage,
                        version=version or st.version,
                        phase=str(phase),
                        reason=reason,
                        message=message,
                        instance=self.instance,
                        detail={"from": str(st.phase), "to": str(phase)},
                    )
                )
            st.last_transition_time = self.clock()
            self.store.add_event(
                name,
                stage,
                "Warning" if phase in (Phase.FAILED, Phase.ROLLED_BACK, Phase.INVALID) else "Normal",
                reason,
                message or f"{phase}",
            )
        st.phase, st.reason, st.message = phase, reason, message
        if version is not None:
            st.version = version
        if commit is not None:
            st.git_commit = commit
        if gates is not None:
            st.gates = gates

    # --- the pass ------------------------------------------------------------------------------

    def reconcile(self, snap: RepoSnapshot, name: str) -> Result:
        now = self.clock()
        status = self.load_status(name)
        result = Result()
        bound = log.bind(release=name, commit=snap.commit)
        try:
            if name in snap.invalid_releases:
                msg = "; ".join(str(p) for p in snap.invalid_releases[name])
                status.phase = Phase.INVALID
                status.observed_commit = snap.commit
                status.conditions = set_condition(
                    status.conditions,
                    Condition(
                        type="Ready",
                        status="False",
                        reason=Reason.VALIDATION_FAILED,
                        message=msg,
                        last_transition_time=now,
                    ),
                )
                return result
            rel = snap.release(name)
            self._pass(snap, rel, status, result)
            if not result.errors:
                for backend in ("kafka", "hive", "presto", "airflow", "spark"):
                    metrics.set_backend_up(backend, True)
        except PipectlError as e:
            bound.error("reconcile failed", error=str(e))
            if isinstance(e, BackendError):
                metrics.set_backend_up(e.backend.split(".")[0], False)
            metrics.record_reconcile_error(name, type(e).__name__)
            result.errors.append(str(e))
            result.requeue_after = 30.0
            status.conditions = set_condition(
                status.conditions,
                Condition(
                    type="Ready",
                    status="False",
                    reason=Reason.BACKEND_UNAVAILABLE if isinstance(e, BackendError) else Reason.APPLY_FAILED,
                    message=str(e),
                    last_transition_time=now,
                ),
            )
        finally:
            self.store.put_status(name, status.model_dump(mode="json", by_alias=True))
            if self.on_status:
                self.on_status(name, status)
        return result

    def _upstream(self, rel: PipelineRelease) -> list[PipelineRelease]:
        snap = self._snap
        if snap is None:
            return []
        return [snap.release(d) for d in rel.spec.depends_on if d in snap.releases]

    def _pass(self, snap: RepoSnapshot, rel: PipelineRelease, status: ReleaseStatus, result: Result) -> None:
        self._snap = snap
        name, version = rel.name, rel.spec.version
        envs = {n: snap.environment(n) for n in snap.environments}
        stages = rel.spec.rollout.stages
        status.version = version
        status.observed_commit = snap.commit

        facts = []
        for stage in stages:
            st = status.stages.get(stage, StageStatus())
            waiting = tuple(d for d in rel.spec.depends_on if not self._dep_ready(d, stage))
            approval = self.store.approval(name, stage, version)
            facts.append(
                StageFacts(
                    stage=stage,
                    promotion=envs[stage].spec.promotion,
                    version=st.version,
                    phase=st.phase,
                    approved_by=approval["approver"] if approval else None,
                    waiting_on=waiting,
                )
            )
        active: str | None = None
        for stage, step, why in plan_steps(version, facts):
            ctx = stage_context(stage, envs)
            if step is Step.IN_SYNC:
                self._in_sync(snap, rel, status, stage, ctx, result)
            elif step is Step.DEPLOY:
                active = stage
                self._deploy(snap, rel, status, stage, ctx, envs, result)
            elif step is Step.AWAIT_APPROVAL:
                active = stage
                self._hold_known_good(rel, status, stage, ctx, result)
                self._set(name, status, stage, Phase.PENDING, Reason.AWAITING_APPROVAL, why)
                result.requeue_after = _min(result.requeue_after, 5.0)
            elif step is Step.BLOCKED:
                active = stage
                self._set(name, status, stage, Phase.BLOCKED, Reason.DEPENDENCY_NOT_READY, f"Blocked: {why}")
                result.requeue_after = _min(result.requeue_after, 15.0)
            elif step is Step.HALTED:
                active = stage
                self._hold_known_good(rel, status, stage, ctx, result, stop_version=version)
            else:  # NOT_REACHED
                self._hold_known_good(rel, status, stage, ctx, result)
                held = status.stages.get(stage)
                if held is None or held.version is None:
                    self._set(name, status, stage, Phase.PENDING, Reason.PREVIOUS_STAGE_NOT_READY, why)

        # release-level summary
        if active is None:
            status.current_stage = stages[-1]
            status.phase = Phase.SUCCEEDED
        else:
            status.current_stage = active
            status.phase = status.stages[active].phase
        ready = status.phase is Phase.SUCCEEDED
        top = status.stages.get(status.current_stage or "", StageStatus())
        status.conditions = set_condition(
            status.conditions,
            Condition(
                type="Ready",
                status="True" if ready else "False",
                reason=Reason.RECONCILIATION_SUCCEEDED if ready else (top.reason or Reason.PROGRESSING),
                message=top.message or "",
                last_transition_time=self.clock(),
            ),
        )
        if status.phase in (Phase.VERIFYING, Phase.PROGRESSING):
            result.requeue_after = _min(result.requeue_after, self.verify_interval)

    def _dep_ready(self, dep: str, stage: str) -> bool:
        raw = self.store.get_status(dep)
        if not raw:
            return False
        st = raw.get("stages", {}).get(stage)
        return bool(st and st.get("phase") == Phase.SUCCEEDED)

    # --- converge ------------------------------------------------------------------------------

    def _observe(self, be: StageBackends, desired: Sequence[Resource]) -> dict[tuple[str, str], Any]:
        by_kind: dict[ResourceKind, list[str]] = {}
        for d in desired:
            by_kind.setdefault(ResourceKind(d.kind), []).append(d.name)
        live: dict[tuple[str, str], Any] = {}
        by_adapter: dict[int, tuple[Any, dict[ResourceKind, list[str]]]] = {}
        for kind, names in by_kind.items():
            adapter = be.adapters[kind]
            by_adapter.setdefault(id(adapter), (adapter, {}))[1][kind] = names
        for adapter, requests in by_adapter.values():
            # an adapter serving several kinds may read them together (Hive: tables and views)
            batched = getattr(adapter, "observe_kinds", None)
            if batched is not None and len(requests) > 1:
                found = batched(requests)
            else:
                found = {kind: adapter.observe(kind, names) for kind, names in requests.items()}
            for kind, resources in found.items():
                for n, r in resources.items():
                    live[(str(kind), n)] = r
        return live

    def converge(
        self,
        rel: PipelineRelease,
        stage: str,
        ctx: StageContext,
        rollout: RolloutInputs,
        commit: str | None,
        kind: str,
        *,
        delete_jobs: Sequence[str] = (),
        apply: bool = True,
    ) -> tuple[Plan, ApplyReport | None]:
        """Plan (and apply) one stage towards ``rel`` at ``rel.spec.version``; audit what changed."""
        root, read = self.reader_for(commit)
        be = self.backends(ctx, root)
        if ctx.canary_of is not None and self.store.known_good(rel.name, ctx.canary_of) is not None:
            rollout = dataclasses.replace(rollout, declare_topics=False)
        desired = desired_resources(
            rel, ctx, read, self.checkpoint_root, rollout, upstream_releases=self._upstream(rel)
        )
        live = self._observe(be, desired)
        prune: list[Any] = []
        if delete_jobs:
            prune = list(be.spark.observe(ResourceKind.STREAMING_JOB, list(delete_jobs)).values())
        plan = make_plan(
            rel.name,
            rel.spec.version,
            stage,
            desired,
            live,
            self.clock(),
            DiffContext(allow_delete=frozenset(delete_jobs), prune=bool(delete_jobs)),
            commit,
            prune,
        )
        self.last_plans[(rel.name, stage)] = plan
        if apply and not plan.is_noop:
            self.store.kv_put(f"lastplan/{rel.name}/{stage}", plan.model_dump_json())
        if not apply or plan.is_noop or plan.refused:
            return plan, None
        run_id = uuid.uuid4().hex
        started = self.clock()
        self.store.run_start(run_id, rel.name, stage, rel.spec.version, kind, commit)
        intent = intent_digest(
            rel.name,
            stage,
            rel.spec.version,
            manifest_digest(rel)
            + json.dumps(rollout.start_offsets, sort_keys=True)
            + str(rollout.serving_version)
            + repr(rollout.view_segments),
        )
        report = self.executor_factory(be).apply(plan, run_id, intent)
        outcome = "failed" if report.failed else ("interrupted" if report.interrupted else "succeeded")
        msg = "; ".join(f"{o.action.id}: {o.message}" for o in report.failed)
        self.store.run_end(run_id, outcome, Reason.APPLY_FAILED if report.failed else None, msg)
        self._audit(
            rel,
            stage,
            kind,
            run_id,
            commit,
            outcome,
            started,
            plan=plan,
            report=report,
            message=msg,
            ctx=ctx,
            read=read,
        )
        return plan, report

    # --- stage steps ---------------------------------------------------------------------------

    def _segments_key(self, name: str, stage: str) -> str:
        return f"segments/{name}/{stage}"

    def _segments(self, name: str, stage: str) -> dict[str, list[ViewSegment]]:
        raw = self.store.kv_get(self._segments_key(name, stage))
        if not raw:
            return {}
        return {k: [ViewSegment.model_validate(s) for s in v] for k, v in json.loads(raw).items()}

    def _start_offsets(self, rel: PipelineRelease, ctx: StageContext) -> dict[str, str]:
        out = {}
        for job in rel.spec.streaming_jobs:
            raw = self.store.kv_get(f"start-offsets/{job_name(ctx, rel.name, job, rel.spec.version)}")
            if raw:
                out[job.name] = json.loads(raw)["offsets"]
        return out

    def _in_sync(
        self,
        snap: RepoSnapshot,
        rel: PipelineRelease,
        status: ReleaseStatus,
        stage: str,
        ctx: StageContext,
        result: Result,
    ) -> None:
        st = self._stage(status, stage)
        rollout = RolloutInputs(
            serving_version=rel.spec.version,
            view_segments=self._segments(rel.name, stage),
            start_offsets=self._start_offsets(rel, ctx),
        )
        delete_jobs: list[str] = []
        if st.previous_version and not ctx.is_canary and st.switched_at is not None:
            if (self.clock() - st.switched_at).total_seconds() >= self.bake_seconds:
                delete_jobs = self._versioned_job_names(rel, ctx, st.previous_version)
            else:
                result.requeue_after = _min(result.requeue_after, 5.0)
        plan, report = self.converge(
            rel, stage, ctx, rollout, snap.commit, "reconcile", delete_jobs=delete_jobs
        )
        if plan.refused:
            self._set(rel.name, status, stage, Phase.FAILED, Reason.PLAN_REFUSED, _refusals(plan))
            return
        if report and report.failed:
            result.requeue_after = _min(result.requeue_after, 30.0)
            result.errors += [o.message for o in report.failed]
            return
        if report:
            result.changed = True
        if delete_jobs and (report is None or not report.failed):
            st.previous_version = None
            self.store.add_event(
                rel.name, stage, "Normal", "BakeComplete", f"stopped blue: {', '.join(delete_jobs)}"
            )

    def _streaming_metrics(self, rel: PipelineRelease, stage: str, ctx: StageContext) -> None:
        """Lag and event-time freshness of the stage's jobs, for the SLO burn alerts."""
        if not rel.spec.streaming_jobs:
            return
        try:
            root, _ = self.reader_for(None)
            be = self.backends(ctx, root)
            now = self.clock()
            for job in rel.spec.streaming_jobs:
                name = job_name(ctx, rel.name, job, rel.spec.version)
                p = be.spark.progress(name)
                if p is None:
                    continue
                wm = watermark_of(p)
                if wm is not None:
                    metrics.set_event_freshness(rel.name, stage, name, (now - wm).total_seconds())
                behind = 0
                done = p.end_offsets
                for src in job.sources:
                    topic = topic_name(ctx, src.topic)
                    for part, end in be.kafka.end_offsets(topic).items():
                        behind += max(0, end - done.get(topic, {}).get(part, 0))
                rate = p.processed_rows_per_second or p.input_rows_per_second or 0.0
                if behind == 0:
                    lag = 0.0
                elif rate > 0:
                    lag = behind / rate
                else:  # stalled with a backlog: at least as old as its last progress
                    lag = (now - p.timestamp).total_seconds()
                metrics.set_streaming_lag(rel.name, stage, name, lag)
        except PipectlError as e:
            log.warning("streaming metrics unavailable", release=rel.name, stage=stage, error=str(e))

    def _versioned_job_names(self, rel: PipelineRelease, ctx: StageContext, version: str) -> list[str]:
        return [
            job_name(ctx, rel.name, j, version)
            for j in rel.spec.streaming_jobs
            if j.strategy in VERSIONED_STRATEGIES
        ]

    def _known_good(self, name: str, stage: str) -> tuple[PipelineRelease, str | None] | None:
        kg = self.store.known_good(name, stage)
        if not kg:
            return None
        return PipelineRelease.model_validate_json(kg["manifest"]), kg["commit"]

    def _hold_known_good(
        self,
        rel: PipelineRelease,
        status: ReleaseStatus,
        stage: str,
        ctx: StageContext,
        result: Result,
        stop_version: str | None = None,
    ) -> None:
        """Keep the stage on its last known good version (and, after a rollback, the failed one stopped)."""
        kg = self._known_good(rel.name, stage)
        stop = self._versioned_job_names(rel, ctx, stop_version) if stop_version else []
        if kg is not None and stop_version is not None and kg[0].spec.version == stop_version:
            stop = []
        if kg is None:
            if stop:
                # nothing was ever good here: only make sure the failed version is not running
                root, _ = self.reader_for(None)
                be = self.backends(ctx, root)
                live = be.spark.observe(ResourceKind.STREAMING_JOB, stop)
                if live:
                    self._delete_jobs(rel, stage, ctx, list(live), None)
            return
        good, commit = kg
        rollout = RolloutInputs(
            serving_version=good.spec.version,
            view_segments=self._segments(rel.name, stage),
            start_offsets=self._start_offsets(good, ctx),
        )
        try:
            _, report = self.converge(good, stage, ctx, rollout, commit, "reconcile", delete_jobs=stop)
        except PipectlError as e:
            result.errors.append(str(e))
            return
        if report and report.failed:
            result.errors += [o.message for o in report.failed]
            result.requeue_after = _min(result.requeue_after, 30.0)

    def _delete_jobs(
        self, rel: PipelineRelease, stage: str, ctx: StageContext, names: list[str], commit: str | None
    ) -> None:
        root, _ = self.reader_for(commit)
        be = self.backends(ctx, root)
        prune = list(be.spark.observe(ResourceKind.STREAMING_JOB, names).values())
        plan = make_plan(
            rel.name,
            rel.spec.version,
            stage,
            [],
            {},
            self.clock(),
            DiffContext(allow_delete=frozenset(names), prune=True),
            commit,
            prune,
        )
        if plan.actions:
            run_id = uuid.uuid4().hex
            self.executor_factory(be).apply(
                plan, run_id, intent_digest(rel.name, stage, "stop", ",".join(names))
            )

    def _green_offsets(
        self, rel: PipelineRelease, ctx: StageContext, be: StageBackends, baseline_version: str
    ) -> None:
        """Persist, once per green job, where it starts: blue's position minus the replay window."""
        for job in rel.spec.streaming_jobs:
            if job.strategy not in VERSIONED_STRATEGIES:
                continue
            green = job_name(ctx, rel.name, job, rel.spec.version)
            key = f"start-offsets/{green}"
            if self.store.kv_get(key):
                continue
            blue = job_name(ctx, rel.name, job, baseline_version)
            progress = be.spark.progress(blue)
            window = parse_duration(job.replay_window)
            anchor = self.clock()
            wm = watermark_of(progress)
            if wm is not None:
                anchor = min(anchor, wm)
            start_time = anchor - timedelta(seconds=window)
            offsets: dict[str, dict[str, int]] = {}
            blue_end = progress.end_offsets if progress is not None else {}
            for src in job.sources:
                topic = topic_name(ctx, src.topic)
                at_time = be.kafka.offsets_for_times(topic, int(start_time.timestamp() * 1000))
                ends = be.kafka.end_offsets(topic)
                parts = {}
                for p, end in ends.items():
                    off = at_time.get(p, -1)
                    if off is None or off < 0:
                        off = end
                    if topic in blue_end and p in blue_end[topic]:
                        off = min(off, blue_end[topic][p])
                    parts[str(p)] = int(off)
                offsets[topic] = parts
            self.store.kv_put(
                key,
                json.dumps(
                    {
                        "offsets": json.dumps(offsets, sort_keys=True, separators=(",", ":")),
                        "start_time": start_time.isoformat(),
                        "blue": blue,
                    }
                ),
            )

    def _deploy(
        self,
        snap: RepoSnapshot,
        rel: PipelineRelease,
        status: ReleaseStatus,
        stage: str,
        ctx: StageContext,
        envs: dict[str, Environment],
        result: Result,
    ) -> None:
        name, version = rel.name, rel.spec.version
        baseline_stage = ctx.canary_of or stage
        kg = self._known_good(name, baseline_stage)
        baseline_version = kg[0].spec.version if kg else None
        has_versioned = any(j.strategy in VERSIONED_STRATEGIES for j in rel.spec.streaming_jobs)
        blue_green = has_versioned and baseline_version is not None and baseline_version != version
        st = self._stage(status, stage)
        if st.version != version or st.phase not in (Phase.PROGRESSING, Phase.VERIFYING):
            self._set(
                name,
                status,
                stage,
                Phase.PROGRESSING,
                Reason.PROGRESSING,
                f"deploying {version}",
                version=version,
                commit=snap.commit,
                gates=[],
            )
        root, _read = self.reader_for(snap.commit)
        be = self.backends(ctx, root)
        if blue_green and baseline_version is not None:
            self._green_offsets(rel, ctx, be, baseline_version)
        serving = baseline_version if blue_green else version
        segments = self._segments(name, stage)
        rollout = RolloutInputs(
            serving_version=serving, view_segments=segments, start_offsets=self._start_offsets(rel, ctx)
        )
        if blue_green and kg is not None and not ctx.is_canary and not segments:
            # before the first switch the view serves blue's table as a single segment
            rollout = RolloutInputs(serving_version=serving, start_offsets=rollout.start_offsets)

        plan, report = self.converge(rel, stage, ctx, rollout, snap.commit, "apply")
        if plan.refused:
            self._set(name, status, stage, Phase.FAILED, Reason.PLAN_REFUSED, _refusals(plan))
            self._audit(
                rel,
                stage,
                "apply",
                uuid.uuid4().hex,
                snap.commit,
                "refused",
                self.clock(),
                plan=plan,
                message=_refusals(plan),
                reason=Reason.PLAN_REFUSED,
            )
            return
        if report is not None:
            result.changed = True
            if report.failed:
                msg = "; ".join(f"{o.action.id}: {o.message}" for o in report.failed)
                transient = any(
                    o.transient_reason
                    or "unavailable" in o.message.lower()
                    or "timed out" in o.message.lower()
                    for o in report.failed
                )
                reasons = {o.transient_reason for o in report.failed if o.transient_reason}
                reason = reasons.pop() if len(reasons) == 1 else Reason.BACKEND_UNAVAILABLE
                self._set(
                    name,
                    status,
                    stage,
                    Phase.PROGRESSING if transient else Phase.FAILED,
                    reason if transient else Reason.APPLY_FAILED,
                    msg,
                )
                result.requeue_after = _min(result.requeue_after, 15.0 if transient else 60.0)
                return
            if report.interrupted:
                return

        # converged: soak until the new jobs have processed data, then verify
        soaking = self._soaking(
            rel, ctx, be, self._stage(status, stage), baseline_version if blue_green else None
        )
        if soaking:
            self._set(name, status, stage, Phase.VERIFYING, Reason.VERIFYING, f"soaking: {soaking}")
            result.requeue_after = _min(result.requeue_after, 5.0)
            return
        self._set(name, status, stage, Phase.VERIFYING, Reason.VERIFYING, "evaluating gates")
        tables = {t.name: physical_table(ctx, rel, t.name, version) for t in rel.spec.tables}
        jobs = {j.name: job_name(ctx, rel.name, j, version) for j in rel.spec.streaming_jobs}
        baseline_tables: dict[str, str] = {}
        if baseline_version is not None and kg is not None:
            target_ctx = stage_context(baseline_stage, envs)
            baseline_tables = {
                t.name: physical_table(target_ctx, kg[0], t.name, baseline_version) for t in kg[0].spec.tables
            }
        schema_texts = {}
        for s in rel.spec.schemas:
            try:
                schema_texts[s.name] = _read(s.path).decode("utf-8")
            except OSError:
                pass
        applies = [g for g in rel.spec.rollout.gates if g.stages is None or stage in g.stages]
        verdicts = (
            self.gates.evaluate(
                GateRequest(
                    release=rel,
                    stage=stage,
                    ctx=ctx,
                    backends=be,
                    tables=tables,
                    jobs=jobs,
                    baseline_tables=baseline_tables,
                    baseline_version=baseline_version,
                    schema_texts=schema_texts,
                    now=self.clock(),
                )
            )
            if applies
            else []
        )
        for v in verdicts:
            metrics.record_gate_result(v.name, str(v.verdict))
        gate_results = [
            GateResult(name=v.name, type=v.type, verdict=Verdict(v.verdict), message=v.message)
            for v in verdicts
        ]
        outcome = judge(
            [(v.name, Verdict(v.verdict), v.message) for v in verdicts], rel.spec.rollout.rollback.automatic
        )
        self._stage(status, stage).gates = gate_results
        if outcome.phase is Phase.VERIFYING:
            self._set(name, status, stage, Phase.VERIFYING, outcome.reason, outcome.message)
            result.requeue_after = _min(result.requeue_after, self.verify_interval)
            return
        run_id = uuid.uuid4().hex
        self._audit(
            rel,
            stage,
            "gate",
            run_id,
            snap.commit,
            "passed" if outcome.phase is Phase.SUCCEEDED else "failed",
            self.clock(),
            gates=verdicts,
            ctx=ctx,
            read=_read,
        )
        if outcome.phase is Phase.SUCCEEDED:
            self._promote(snap, rel, status, stage, ctx, be, blue_green, baseline_version, outcome.message)
            result.changed = True
            result.requeue_after = 0.0
        else:
            self._rollback(snap, rel, status, stage, ctx, outcome.phase, outcome.message, verdicts)
            result.changed = True
        # One history row per attempt: the version, where, what came of it and every gate's verdict.
        final = self._stage(status, stage)
        self.store.run_start(run_id, name, stage, version, "rollout", snap.commit)
        self.store.run_end(
            run_id,
            str(final.phase),
            final.reason,
            final.message or "",
            [
                {"name": v.name, "type": v.type, "verdict": str(v.verdict), "message": v.message}
                for v in verdicts
            ],
        )

    def _soaking(
        self,
        rel: PipelineRelease,
        ctx: StageContext,
        be: StageBackends,
        st: StageStatus,
        baseline_version: str | None = None,
    ) -> str:
        """Why gates should wait: a new job that has not run a few batches with input yet.

        Judging an empty table right after a deploy would fail data gates for no fault of the
        version; soak is measured in data (a batch with rows), bounded by ``soak_timeout``.
        A blue/green job must also have caught up with blue (see ``catch_up_wait``).
        """
        if st.last_transition_time is not None:
            if (self.clock() - st.last_transition_time).total_seconds() > self.soak_timeout:
                return ""
        waiting = []
        for job in rel.spec.streaming_jobs:
            name = job_name(ctx, rel.name, job, rel.spec.version)
            key = f"soaked/{name}"
            if self.store.kv_get(key):
                continue
            p = be.spark.progress(name)
            if p is None or (p.num_input_rows or 0) == 0 or p.batch_id < MIN_SOAK_BATCHES:
                done = "no batch" if p is None else f"batch {p.batch_id}"
                waiting.append(f"{name} at {done}; waiting for batch {MIN_SOAK_BATCHES} with input")
                continue
            if baseline_version is not None and job.strategy in VERSIONED_STRATEGIES and not ctx.is_canary:
                blue = be.spark.progress(job_name(ctx, rel.name, job, baseline_version))
                wait = catch_up_wait(
                    watermark_of(p), watermark_of(blue), timedelta(seconds=parse_duration(job.trigger))
                )
                if wait:
                    waiting.append(f"{name} catching up: {wait}")
                    continue
            self.store.kv_put(key, p.timestamp.isoformat())
        return "; ".join(waiting)

    def _promote(
        self,
        snap: RepoSnapshot,
        rel: PipelineRelease,
        status: ReleaseStatus,
        stage: str,
        ctx: StageContext,
        be: StageBackends,
        blue_green: bool,
        baseline_version: str | None,
        message: str,
    ) -> None:
        name, version = rel.name, rel.spec.version
        started = self.clock()
        switched = False
        if blue_green and not ctx.is_canary and rel.spec.views and baseline_version is not None:
            segments = self._segments(name, stage)
            cutover = self._cutover(rel, ctx)
            new: dict[str, list[ViewSegment]] = {}
            for v in rel.spec.views:
                segs = list(
                    segments.get(v.name)
                    or [ViewSegment(table=physical_table(ctx, rel, v.table, baseline_version))]
                )
                segs.append(
                    ViewSegment(
                        table=physical_table(ctx, rel, v.table, version),
                        since=cutover.strftime("%Y-%m-%d %H:%M:%S"),
                    )
                )
                new[v.name] = segs
            self.store.kv_put(
                self._segments_key(name, stage),
                json.dumps({k: [s.model_dump() for s in v] for k, v in new.items()}),
            )
            rollout = RolloutInputs(
                serving_version=version, view_segments=new, start_offsets=self._start_offsets(rel, ctx)
            )
            _, report = self.converge(rel, stage, ctx, rollout, snap.commit, "promotion")
            if report is not None and report.failed:
                self._set(
                    name,
                    status,
                    stage,
                    Phase.FAILED,
                    Reason.APPLY_FAILED,
                    "view switch failed: " + "; ".join(o.message for o in report.failed),
                )
                return
            switched = True
        self.store.set_known_good(name, stage, version, snap.commit, rel.model_dump_json(by_alias=True))
        self.store.kv_put(
            f"manifest/{name}/{version}",
            json.dumps({"commit": snap.commit, "manifest": rel.model_dump_json(by_alias=True)}),
        )
        _root, read = self.reader_for(snap.commit)
        for s in rel.spec.schemas:
            try:
                self.store.kv_put(f"schema/{name}/{s.name}/{version}", read(s.path).decode("utf-8"))
            except OSError:
                pass
        st = self._stage(status, stage)
        if switched:
            st.previous_version = baseline_version
            st.switched_at = self.clock()
        self._set(
            name,
            status,
            stage,
            Phase.SUCCEEDED,
            Reason.RECONCILIATION_SUCCEEDED,
            message + (f"; serving view switched from {baseline_version}" if switched else ""),
        )
        self._audit(
            rel,
            stage,
            "promotion",
            uuid.uuid4().hex,
            snap.commit,
            "succeeded",
            started,
            message=f"{version} promoted at {stage}",
        )

    def _cutover(self, rel: PipelineRelease, ctx: StageContext) -> datetime:
        """The first minute green has complete: the minute after its start position."""
        latest = None
        for job in rel.spec.streaming_jobs:
            raw = self.store.kv_get(f"start-offsets/{job_name(ctx, rel.name, job, rel.spec.version)}")
            if raw:
                t = datetime.fromisoformat(json.loads(raw)["start_time"])
                latest = t if latest is None else max(latest, t)
        base = latest or self.clock()
        return _ceil_minute(base.astimezone(UTC)) + timedelta(minutes=1)

    def _rollback(
        self,
        snap: RepoSnapshot,
        rel: PipelineRelease,
        status: ReleaseStatus,
        stage: str,
        ctx: StageContext,
        phase: Phase,
        message: str,
        verdicts: list[GateVerdict],
    ) -> None:
        name, version = rel.name, rel.spec.version
        started = self.clock()
        if phase is Phase.ROLLED_BACK:
            failed_jobs = self._versioned_job_names(rel, ctx, version)
            kg = self._known_good(name, stage)
            if kg is not None and kg[0].spec.version == version:
                kg = None
            try:
                if kg is not None:
                    good, commit = kg
                    rollout = RolloutInputs(
                        serving_version=good.spec.version,
                        view_segments=self._segments(name, stage),
                        start_offsets=self._start_offsets(good, ctx),
                    )
                    self.converge(good, stage, ctx, rollout, commit, "restore", delete_jobs=failed_jobs)
                elif failed_jobs:
                    self._delete_jobs(rel, stage, ctx, failed_jobs, snap.commit)
            except PipectlError as e:
                self._set(
                    name, status, stage, Phase.FAILED, Reason.ROLLBACK_FAILED, f"{message}; rollback: {e}"
                )
                self._audit(
                    rel,
                    stage,
                    "rollback",
                    uuid.uuid4().hex,
                    snap.commit,
                    "failed",
                    started,
                    gates=verdicts,
                    message=str(e),
                    reason=Reason.ROLLBACK_FAILED,
                )
                return
            metrics.record_rollback(name, stage)
            if self.events is not None:
                self.events.emit(
                    make_event(
                        EventType.ROLLBACK,
                        release=name,
                        stage=stage,
                        version=version,
                        reason=Reason.GATE_FAILED,
                        message=message,
                        instance=self.instance,
                        detail={"from": version, "to": kg[0].spec.version if kg else None},
                    )
                )
            restored = kg[0].spec.version if kg else "nothing (first version)"
            self._set(
                name, status, stage, Phase.ROLLED_BACK, Reason.GATE_FAILED, f"{message}; restored {restored}"
            )
            self._audit(
                rel,
                stage,
                "rollback",
                uuid.uuid4().hex,
                snap.commit,
                "rolledBack",
                started,
                gates=verdicts,
                message=f"{message}; restored {restored}",
                reason=Reason.GATE_FAILED,
            )
        else:
            self._set(name, status, stage, Phase.FAILED, Reason.GATE_FAILED, message)

    # --- audit ---------------------------------------------------------------------------------

    def _audit(
        self,
        rel: PipelineRelease,
        stage: str,
        kind: str,
        run_id: str,
        commit: str | None,
        outcome: str,
        started: datetime,
        *,
        plan: Plan | None = None,
        report: ApplyReport | None = None,
        gates: Sequence[GateVerdict] = (),
        message: str = "",
        reason: str | None = None,
        ctx: StageContext | None = None,
        read: Reader | None = None,
    ) -> None:
        if read is None:
            _root, read = self.reader_for(commit)
        code: list[Artifact] = []
        for p in (
            [j.entrypoint for j in rel.spec.streaming_jobs]
            + [d.path for d in rel.spec.dags]
            + [t.sql for t in rel.spec.transforms]
        ):
            try:
                code.append(Artifact(path=p, digest=digest(read(p))))
            except OSError:
                code.append(Artifact(path=p, digest="missing"))
        schemas = []
        for s in rel.spec.schemas:
            try:
                text = read(s.path)
                schemas.append(
                    SchemaRef(
                        name=s.name,
                        version=rel.spec.version,
                        fingerprint=_fingerprint(text),
                        compatibility=str(s.compatibility),
                    )
                )
            except OSError:
                pass
        lineage = Lineage()
        if ctx is not None:
            for j in rel.spec.streaming_jobs:
                lineage.inputs += [f"kafka:{topic_name(ctx, s.topic)}" for s in j.sources]
                lineage.outputs += [
                    f"hive:{physical_table(ctx, rel, s.table, rel.spec.version)}" for s in j.sinks
                ]
            for v in rel.spec.views:
                if not ctx.is_canary:
                    lineage.outputs.append(f"hive:{table_name(ctx, v.name)}")
            if rel.spec.transforms:
                try:
                    up = self._upstream(rel)
                    inputs, outputs = transform_datasets(rel, ctx, read, upstream=up)
                    lineage.inputs += [i for i in inputs if i not in lineage.inputs]
                    lineage.outputs += [o for o in outputs if o not in lineage.outputs]
                    lineage.columns = transform_lineage(rel, ctx, read, upstream=up)
                except PipectlError as e:
                    log.warning("transform lineage unavailable", release=rel.name, error=str(e))
        rec = AuditRecord(
            run_id=run_id,
            kind=kind,  # type: ignore[arg-type]
            release=rel.name,
            version=rel.spec.version,
            stage=stage,
            git_commit=commit,
            manifest_digest=manifest_digest(rel),
            code=code,
            schemas=schemas,
            lineage=lineage,
            plan_summary=[a.describe() for a in plan.actions] if plan else [],
            actions=[f"{o.action.id}: {o.state}" for o in report.outcomes] if report else [],
            gates=list(gates),
            outcome=outcome,
            reason=reason,
            message=message,
            controller_instance=self.instance,
            started_at=started,
            finished_at=self.clock(),
        )
        self.ledger.append(rec)


def _fingerprint(schema_text: bytes) -> str:
    """Parsing Canonical Form fingerprint for Avro (sha256), or sha256 of the text otherwise."""
    try:
        import avro.schema

        canonical = avro.schema.parse(schema_text.decode("utf-8")).canonical_form
        return digest(canonical.encode())
    except Exception:
        return digest(schema_text)


def _refusals(plan: Plan) -> str:
    return "; ".join(f"{a.kind} {a.name}: {a.reason} [{a.reason_code}]" for a in plan.refused)


def _min(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)


__all__ = ["GateRequest", "GateRunner", "Reconciler", "Result", "TransientBackendError", "math"]
