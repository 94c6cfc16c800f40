"""Stage operations: the one code path the controller's pass and every CLI verb use to plan and
change a stage — converge (plan → journaled apply → audit), stop jobs, and the rollout inputs of
each step (what serves, how views stitch, where green jobs start).

``pipectl plan``/``diff`` call ``preview`` and so compute exactly the plan the controller's pass
would for that stage (same upstream releases, same view segments, same start offsets).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from controller.adapters.base import Adapter
from controller.audit.ledger import Ledger
from controller.audit.records import RunFacts, build_record, manifest_digest
from controller.audit.snapshots import SnapshotPort, SqlReader, snapshots_at
from controller.engine import prune
from controller.engine.backends import BackendsFactory, BatchObserver, StagePorts
from controller.engine.executor import ApplyReport, Executor, intent_digest
from controller.engine.fastpath import FastPath, digest, live_digest
from controller.engine.snapshot import LiveSnapshot, LiveView, invalidating, written_scope
from controller.model.errors import PipectlError
from controller.model.manifest import PipelineRelease, StreamingJobSpec
from controller.model.status import ReleaseStatus, StageStatus
from controller.obs.events import EventSink, EventType, make_event
from controller.plan.actions import Action, DiffContext, Plan
from controller.plan.desired import (
    VERSIONED_STRATEGIES,
    RolloutInputs,
    StageContext,
    desired_resources,
    job_name,
)
from controller.plan.planner import make_plan
from controller.plan.resources import Resource, ResourceKind
from controller.rollout import inplace, keysteps, schema_order
from controller.rollout.upstream import served_version
from controller.store.db import Store
from controller.store.destructive import Inventory
from controller.store.rollout import PinnedCheckpoint, RolloutStore, StageRollout

log = structlog.get_logger(__name__)


def _approved(action: Action) -> str:
    """`` (approved by alice, sha256:…)`` for an approved destructive action, else ""."""
    return f" (approved by {action.approved_by}, {action.approval_digest})" if action.approved_by else ""


Reader = Callable[[str], bytes]
ReaderFor = Callable[[str | None], tuple[Path, Reader]]


@dataclass(frozen=True)
class Baseline:
    """What a deploy at a stage is measured against: the known good of the stage (a canary's
    target's), and whether the new version runs beside it (blue/green) or replaces it."""

    stage: str
    release: PipelineRelease | None
    commit: str | None
    blue_green: bool

    @property
    def version(self) -> str | None:
        return self.release.spec.version if self.release is not None else None


@dataclass
class StageOps:
    store: Store
    ledger: Ledger
    backends: BackendsFactory
    reader_for: ReaderFor
    clock: Callable[[], datetime]
    instance: str = "pipectl"
    checkpoint_root: str = ".pipectl/checkpoints"
    stop: threading.Event = field(default_factory=threading.Event)
    executor_factory: Callable[[StagePorts], Executor] | None = None
    events: EventSink | None = None
    pin: Callable[[str, str | None], None] | None = None
    """Keeps a known-good commit reachable in git (``GitSource.pin``)."""
    live: LiveView | None = None
    """The pass-wide live-state snapshot (``engine.snapshot``); None: each plan observes itself."""

    def __post_init__(self) -> None:
        self.checkpoint_root = str(Path(self.checkpoint_root).resolve())
        self.rollouts = RolloutStore(self.store)
        self.last_plans: dict[tuple[str, str], Plan] = {}
        """(release, stage) → the latest plan computed in this process (benchmarks read it)."""
        self.fast = FastPath()
        """Converged no-op passes: the same inputs again skip planning (``engine.fastpath``)."""

    def share_live_state(self) -> LiveSnapshot:
        """Answer every plan's observe from one pass-wide snapshot (the controller does this)."""
        snap = LiveSnapshot(self.clock, self.observe_adapters)
        self.live = snap
        return snap

    # --- facts ---------------------------------------------------------------------------------

    def known_good(self, release: str, stage: str) -> tuple[PipelineRelease, str | None] | None:
        kg = self.store.known_good(release, stage)
        if not kg:
            return None
        return PipelineRelease.model_validate_json(kg["manifest"]), kg["commit"]

    def set_known_good(
        self, release: str, stage: str, version: str, commit: str | None, manifest: str
    ) -> None:
        """Record the stage's known good and pin its commit under ``refs/pipectl/known-good/...``."""
        if self.pin is not None:
            try:
                self.pin(f"known-good/{release}/{stage}", commit)
            except PipectlError as e:  # the record still counts; the pin is retried at the next promotion
                log.warning("known-good commit not pinned", release=release, stage=stage, error=str(e))
        self.store.set_known_good(release, stage, version, commit, manifest)

    @staticmethod
    def versioned_jobs(rel: PipelineRelease, ctx: StageContext, version: str) -> list[str]:
        return [
            job_name(ctx, rel.name, j, version)
            for j in rel.spec.streaming_jobs
            if j.strategy in VERSIONED_STRATEGIES
        ]

    def start_offsets(self, rel: PipelineRelease, ctx: StageContext, state: StageRollout) -> dict[str, str]:
        """Where ``rel``'s green jobs start. A canary's jobs are its target's next green (same name,
        same checkpoint), so their one start position lives in the target stage's document."""
        if ctx.canary_of is not None:
            state = self.rollouts.stage(rel.name, ctx.canary_of)
        out = {}
        for job in rel.spec.streaming_jobs:
            pos = state.start_offsets.get(job_name(ctx, rel.name, job, rel.spec.version))
            if pos is not None:
                out[job.name] = pos.offsets
        return out

    def inplace_jobs(self, rel: PipelineRelease, ctx: StageContext) -> dict[str, StreamingJobSpec]:
        """Physical name → spec of ``rel``'s in-place jobs at the stage (one name per stage)."""
        return {
            job_name(ctx, rel.name, j, rel.spec.version): j
            for j in rel.spec.streaming_jobs
            if j.strategy not in VERSIONED_STRATEGIES
        }

    def rollback_jobs(self, rel: PipelineRelease, ctx: StageContext, version: str) -> list[str]:
        """The jobs a rollback of ``version`` stops: its blue/green ones, and its in-place ones (a
        canary's shadow job too), which the known good then restarts under the same name."""
        return self.versioned_jobs(rel, ctx, version) + list(self.inplace_jobs(rel, ctx))

    def pin_restarts(
        self,
        rel: PipelineRelease,
        ctx: StageContext,
        state: StageRollout,
        failed_version: str,
        offsets: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Move ``rel``'s in-place jobs whose ``failed_version`` start was recorded to a fresh
        checkpoint from those offsets, or from ``offsets[job]`` (where its rolled back tables end,
        ``engine.table_restore``), in ``state``, which the caller writes before any side effect;
        the pinned job names."""
        pinned = []
        for name in self.inplace_jobs(rel, ctx):
            rec = state.inplace_starts.get(name)
            if rec is None or rec.version != failed_version:
                continue
            start = (offsets or {}).get(name, rec.offsets)
            fresh = inplace.fresh_checkpoint(rec.checkpoint, failed_version, start)
            state.checkpoints[name] = PinnedCheckpoint(checkpoint=fresh, offsets=start, after=failed_version)
            pinned.append(name)
        return pinned

    def served_upstream(self, upstream: Sequence[PipelineRelease], stage: str) -> list[PipelineRelease]:
        """Each ``dependsOn`` release as ``stage`` serves it (``rollout.upstream.served_version``):
        the committed manifest when the stage serves that version, else the served version's
        recorded one (the stage's known good, or the release's promoted history)."""
        out = []
        for u in upstream:
            raw = self.store.get_status(u.name)
            st = ReleaseStatus.model_validate(raw).stages.get(stage) if raw else None
            kg = self.store.known_good(u.name, stage)
            good = kg["version"] if kg else None
            v = served_version(st.phase if st else None, st.version if st else None, good)
            if v is None or v == u.spec.version:
                out.append(u)
            elif kg is not None and good == v:
                out.append(PipelineRelease.model_validate_json(kg["manifest"]))
            elif (entry := self.rollouts.history(u.name).versions.get(v)) is not None:
                out.append(PipelineRelease.model_validate_json(entry.manifest))
            else:
                out.append(u)
        return out

    def baseline(self, rel: PipelineRelease, stage: str, ctx: StageContext) -> Baseline:
        base_stage = ctx.canary_of or stage
        kg = self.known_good(rel.name, base_stage)
        good, commit = kg if kg is not None else (None, None)
        versioned = any(j.strategy in VERSIONED_STRATEGIES for j in rel.spec.streaming_jobs)
        bg = versioned and good is not None and good.spec.version != rel.spec.version
        return Baseline(base_stage, good, commit, bg)

    # --- the rollout inputs of each step -------------------------------------------------------

    def sync_inputs(
        self, rel: PipelineRelease, stage: str, ctx: StageContext, st: StageStatus, bake_seconds: float
    ) -> tuple[RolloutInputs, list[str], bool]:
        """An in-sync stage: (inputs, blue jobs whose bake is over and may stop, bake still running)."""
        inputs = self.inputs(rel, stage, ctx, rel.spec.version)
        if not (st.previous_version and not ctx.is_canary and st.switched_at is not None):
            return inputs, [], False
        if (self.clock() - st.switched_at).total_seconds() >= bake_seconds:
            return inputs, self.versioned_jobs(rel, ctx, st.previous_version), False
        return inputs, [], True

    def deploy_inputs(
        self, rel: PipelineRelease, stage: str, ctx: StageContext, base: Baseline
    ) -> RolloutInputs:
        """The active stage: the new version beside blue (serving view still on blue) or in place."""
        return self.inputs(rel, stage, ctx, base.version if base.blue_green else rel.spec.version)

    def hold_inputs(self, good: PipelineRelease, stage: str, ctx: StageContext) -> RolloutInputs:
        """A stage kept on (or restored to) its known good version."""
        return self.inputs(good, stage, ctx, good.spec.version)

    def inputs(
        self, rel: PipelineRelease, stage: str, ctx: StageContext, serving: str | None
    ) -> RolloutInputs:
        """The stage's recorded rollout inputs for ``rel``: view segments, green start offsets, and
        the fresh checkpoint (with its start offsets) of each in-place job a rollback moved."""
        state = self.rollouts.stage(rel.name, stage)
        offsets = self.start_offsets(rel, ctx, state)
        checkpoints = {}
        for name, job in self.inplace_jobs(rel, ctx).items():
            pin = state.checkpoints.get(name)
            if pin is not None:
                offsets[job.name], checkpoints[job.name] = pin.offsets, pin.checkpoint
        return RolloutInputs(
            serving_version=serving,
            view_segments=state.segments,
            start_offsets=offsets,
            checkpoints=checkpoints,
            key_splits=keysteps.splits(state.key_step, rel.spec.version),
        )

    def moved_jobs(self, rel: PipelineRelease, ctx: StageContext, rollout: RolloutInputs) -> frozenset[str]:
        """``rel``'s in-place jobs that ``rollout`` moves to a fresh checkpoint (a restart from
        recorded offsets, which the in-place diff rule would otherwise refuse)."""
        return frozenset(n for n, j in self.inplace_jobs(rel, ctx).items() if j.name in rollout.checkpoints)

    # --- converge ------------------------------------------------------------------------------

    @staticmethod
    def observe(be: StagePorts, desired: Sequence[Resource]) -> dict[tuple[str, str], Any]:
        """Live state of ``desired``: one observe per adapter (an adapter serving several kinds may
        read them together, as Hive does for tables and views)."""
        return StageOps.observe_adapters(be.adapters, desired)

    @staticmethod
    def observe_adapters(
        adapters: Mapping[ResourceKind, Adapter], desired: Sequence[Resource]
    ) -> dict[tuple[str, str], Any]:
        by_adapter: dict[int, tuple[Adapter, dict[ResourceKind, list[str]]]] = {}
        for d in desired:
            kind = ResourceKind(d.kind)
            adapter = adapters[kind]
            by_adapter.setdefault(id(adapter), (adapter, {}))[1].setdefault(kind, []).append(d.name)
        live: dict[tuple[str, str], Any] = {}
        for adapter, requests in by_adapter.values():
            found: Mapping[ResourceKind, Mapping[str, Resource]]
            if isinstance(adapter, BatchObserver) and len(requests) > 1:
                found = adapter.observe_kinds(requests)
            else:
                found = {kind: adapter.observe(kind, names) for kind, names in requests.items()}
            for kind, resources in found.items():
                for n, r in resources.items():
                    live[(str(kind), n)] = r
        return live

    def desired(
        self,
        rel: PipelineRelease,
        ctx: StageContext,
        rollout: RolloutInputs,
        commit: str | None,
        upstream: Sequence[PipelineRelease] = (),
    ) -> list[Any]:
        """What ``plan`` converges the stage to (nothing read live): ``rel``'s resources at ``ctx``.
        A canary declares no topics once its target has a known good (they are the target's)."""
        _root, read = self.reader_for(commit)
        if ctx.canary_of is not None and self.store.known_good(rel.name, ctx.canary_of) is not None:
            rollout = dataclasses.replace(rollout, declare_topics=False)
        return list(
            desired_resources(rel, ctx, read, self.checkpoint_root, rollout, upstream_releases=list(upstream))
        )

    def plan(
        self,
        rel: PipelineRelease,
        stage: str,
        ctx: StageContext,
        rollout: RolloutInputs,
        commit: str | None,
        upstream: Sequence[PipelineRelease] = (),
        delete_jobs: Sequence[str] = (),
    ) -> tuple[Plan, StagePorts]:
        """The plan that converges ``stage`` to ``rel`` (nothing applied)."""
        plan, be, _, _ = self._plan(rel, stage, ctx, rollout, commit, upstream, delete_jobs)
        return plan, be

    def _plan(
        self,
        rel: PipelineRelease,
        stage: str,
        ctx: StageContext,
        rollout: RolloutInputs,
        commit: str | None,
        upstream: Sequence[PipelineRelease],
        delete_jobs: Sequence[str],
    ) -> tuple[Plan, StagePorts, prune.StagePrune, tuple[list[Any], dict[tuple[str, str], Any]]]:
        """The plan, its prune candidates and approvals (``engine.prune``), and (desired, live)."""
        root, read = self.reader_for(commit)
        be = self.backends(ctx, root)
        desired = self.desired(rel, ctx, rollout, commit, upstream)
        live = self._live(be, desired, rel.name)
        stopped: list[Any] = []
        if delete_jobs:
            stopped = list(be.spark.observe(ResourceKind.STREAMING_JOB, list(delete_jobs)).values())
        sp = prune.gather(self.store, be, rel, stage, ctx, desired)
        plan = make_plan(
            rel.name,
            rel.spec.version,
            stage,
            desired,
            live,
            self.clock(),
            DiffContext(
                allow_delete=frozenset(delete_jobs),
                prune=bool(delete_jobs),
                grants=sp.grants,
                new_checkpoints=self.moved_jobs(rel, ctx, rollout),
            ),
            commit,
            stopped + sp.candidates,
        )
        plan = self._schema_order(plan, rel, ctx, read)
        self.last_plans[(rel.name, stage)] = plan
        return plan, be, sp, (desired, live)

    def _schema_order(self, plan: Plan, rel: PipelineRelease, ctx: StageContext, read: Reader) -> Plan:
        """A plan that changes anything, with the producer/consumer order of each schema ``rel``
        changes against its newest earlier promoted version (``controller.rollout.schema_order``)."""
        if not plan.actions or not rel.spec.schemas:
            return plan
        now = {}
        for s in rel.spec.schemas:
            try:
                now[s.name] = read(s.path).decode("utf-8")
            except (OSError, UnicodeDecodeError, PipectlError):
                continue  # validation names the file; the schemaCompatibility gate fails on it
        before = schema_order.earlier_texts(self.rollouts.history(rel.name).schemas, rel.spec.version)
        physical = {j.name: job_name(ctx, rel.name, j, rel.spec.version) for j in rel.spec.streaming_jobs}
        return schema_order.annotate(plan, schema_order.schema_changes(rel, now, before), physical)

    def converge(
        self,
        rel: PipelineRelease,
        stage: str,
        ctx: StageContext,
        rollout: RolloutInputs,
        commit: str | None,
        kind: str,
        *,
        upstream: Sequence[PipelineRelease] = (),
        delete_jobs: Sequence[str] = (),
        apply: bool = True,
    ) -> tuple[Plan, ApplyReport | None]:
        """Plan (and apply, journaled) one stage towards ``rel``; audit what changed. The same
        inputs as the last converged no-op pass skip planning (``engine.fastpath``)."""
        inputs = None
        if apply and commit is not None and not delete_jobs:
            inputs = self._noop_inputs(rel, stage, ctx, rollout, commit, upstream)
            fast = self._fast_noop(rel, stage, ctx, commit, inputs)
            if fast is not None:
                return fast, None
        plan, be, sp, (desired, live) = self._plan(rel, stage, ctx, rollout, commit, upstream, delete_jobs)
        if not apply:
            return plan, None
        self.store.journal_settle(rel.name, stage, {a.id for a in plan.actions})
        if plan.is_noop or plan.refused:
            prune.record(self.store, sp, plan, None, None)
            if inputs is not None:
                self.fast.remember(rel.name, stage, inputs, desired, live_digest(live), plan)
            return plan, None
        self.fast.forget(rel.name, stage)
        state = self.rollouts.stage(rel.name, stage)
        state.last_plan = plan.model_dump_json()
        self.rollouts.put_stage(rel.name, stage, state)
        run_id = uuid.uuid4().hex
        started = self.clock()
        self.store.run_start(run_id, rel.name, stage, rel.spec.version, kind, commit)
        intent = intent_digest(
            rel.name,
            stage,
            rel.spec.version,
            manifest_digest(rel)
            + json.dumps(rollout.start_offsets, sort_keys=True)
            + json.dumps(rollout.checkpoints, sort_keys=True)
            + str(rollout.serving_version)
            + repr(rollout.view_segments)
            + repr(rollout.key_splits),
        )
        moved = DiffContext(new_checkpoints=self.moved_jobs(rel, ctx, rollout))  # the re-check's rule too
        report = self._executor(be).apply(plan, run_id, intent, moved)
        self._drop_written(be, plan)
        prune.record(self.store, sp, plan, report, run_id)
        outcome = "failed" if report.failed else ("interrupted" if report.interrupted else "succeeded")
        msg = "; ".join(f"{o.action.id}: {o.message}" for o in report.failed)
        self.store.run_end(run_id, outcome, "ApplyFailed" if report.failed else None, msg)
        for o in report.outcomes:
            self.emit(
                EventType.ACTION,
                rel,
                stage,
                run_id=run_id,
                git_commit=commit,
                message=o.message or o.state,
                detail={
                    "action_id": o.action.id,
                    "kind": str(o.action.kind),
                    "name": o.action.name,
                    "op": str(o.action.op),
                    "state": o.state,
                    "message": o.message,
                },
            )
        _root, read = self.reader_for(commit)
        actions = [f"{o.action.id}: {o.state}{_approved(o.action)}" for o in report.outcomes]
        now = self.clock()
        run = RunFacts(kind, run_id, commit, outcome, started, now, self.instance, plan, actions, (), msg)
        if prune.approved_note(plan):
            run.details["destructiveApprovals"] = prune.approved_note(plan)
        self.audit(rel, stage, run, ctx, read, upstream)
        return plan, report

    def _live(self, be: StagePorts, desired: list[Any], owner: str) -> dict[tuple[str, str], Any]:
        """Live state of ``desired``: from the pass-wide snapshot when there is one."""
        if self.live is None:
            return self.observe(be, desired)
        return self.live.observe(be.adapters, desired, owner)

    def _drop_written(self, be: StagePorts, plan: Plan) -> None:
        """Drop the snapshot's entries of every adapter the plan wrote through (also when an
        injected executor did not go through ``snapshot.invalidating``)."""
        if self.live is not None:
            for a in plan.actions:
                adapter = be.adapters[a.kind]
                self.live.invalidate(adapter, written_scope(adapter, a))

    def _noop_inputs(
        self,
        rel: PipelineRelease,
        stage: str,
        ctx: StageContext,
        rollout: RolloutInputs,
        commit: str,
        upstream: Sequence[PipelineRelease],
    ) -> str:
        """Everything but live state that a plan of ``stage`` depends on, as one digest."""
        canary_declares = ctx.canary_of is not None and self.store.known_good(rel.name, ctx.canary_of) is None
        return digest(
            manifest_digest(rel),
            stage,
            repr(ctx),
            repr(rollout),
            commit,
            [manifest_digest(u) for u in upstream],
            canary_declares,
            Inventory(self.store).get(rel.name, stage),
        )

    def _fast_noop(
        self, rel: PipelineRelease, stage: str, ctx: StageContext, commit: str, inputs: str
    ) -> Plan | None:
        """The last converged no-op plan, when inputs and the live state it saw are unchanged."""
        key = self.fast.candidate(rel.name, stage, inputs)
        if key is None:
            return None
        root, _read = self.reader_for(commit)
        be = self.backends(ctx, root)
        desired = list(key.desired)
        live = self._live(be, desired, rel.name)
        remembered = self.fast.confirm(rel.name, stage, key, live_digest(live))
        if remembered is None:
            return None
        plan = remembered.model_copy(update={"generated_at": self.clock()})
        self.last_plans[(rel.name, stage)] = plan
        self.store.journal_settle(rel.name, stage, set())
        return plan

    def delete_jobs(
        self, rel: PipelineRelease, stage: str, ctx: StageContext, names: list[str]
    ) -> ApplyReport | None:
        """Stop (and forget) the named streaming jobs that still exist."""
        root, _ = self.reader_for(None)
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
            None,
            prune,
        )
        if not plan.actions:
            return None
        intent = intent_digest(rel.name, stage, "stop", ",".join(names))
        return self._executor(be).apply(plan, uuid.uuid4().hex, intent)

    def _executor(self, be: StagePorts) -> Executor:
        if self.executor_factory is not None:
            return self.executor_factory(be)
        adapters = be.adapters if self.live is None else invalidating(be.adapters, self.live)
        return Executor(self.store, adapters, stop=self.stop)

    # --- records -------------------------------------------------------------------------------

    def audit(
        self,
        rel: PipelineRelease,
        stage: str,
        run: RunFacts,
        ctx: StageContext | None = None,
        read: Reader | None = None,
        upstream: Sequence[PipelineRelease] = (),
        *,
        tables_at: StageContext | None = None,
    ) -> None:
        """Append the run's record, with the current snapshot of each of the release's Iceberg
        tables at the stage (``ctx`` or, for a record without lineage, ``tables_at``)."""
        if read is None:
            _root, read = self.reader_for(run.commit)
        rec = build_record(rel, stage, run, read, ctx, upstream)
        at = ctx or tables_at
        if at is not None:
            rec.snapshots = snapshots_at(rel, at, lambda c: snapshot_reader(self.backends(c, None)))
        self.ledger.append(rec)

    def emit(self, event_type: EventType, rel: PipelineRelease | str, stage: str | None, **kw: Any) -> None:
        if self.events is None:
            return
        name = rel if isinstance(rel, str) else rel.name
        kw.setdefault("version", None if isinstance(rel, str) else rel.spec.version)
        try:
            self.events.emit(make_event(event_type, release=name, stage=stage, instance=self.instance, **kw))
        except Exception as e:  # the event stream never breaks a pass
            log.warning("event not emitted", event_type=str(event_type), error=str(e))


def snapshot_reader(ports: StagePorts) -> SqlReader | SnapshotPort:
    """The stage's table adapter when it reads Iceberg snapshots (the Thrift Server answers in a
    fraction of Presto's time, and an audit record is written on every run), else its Presto."""
    tables = ports.adapters.get(ResourceKind.TABLE)
    return tables if isinstance(tables, SnapshotPort) else ports.presto
