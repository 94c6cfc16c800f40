"""One level-triggered pass over one release: read git + live state, converge, verify, promote.

The pass follows controller-runtime's contract: the only input is the release name (plus the
repository snapshot of this pass); everything else is read fresh. It is glue, in the order Flux's
kustomize-controller uses:

1. gather ``StageFacts`` from the state store (versions, phases, approvals, dependencies);
2. ``rollout.stages.plan_steps`` decides one ``Step`` per stage (pure);
3. each step runs (``engine.steps``: in sync / deploy / hold; ``engine.verdicts``: gates, promote,
   roll back) through the stage operations the CLI uses too (``engine.stage_ops``);
4. the release's status, conditions and metrics are written once, on the way out, whatever happened.

An exception of any type inside a pass marks only that release Ready=False with a named reason and
its message, and asks for a retry with backoff; every other release keeps reconciling.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from controller.audit.ledger import Ledger
from controller.engine.analysis import Analysis
from controller.engine.backends import BackendsFactory, StagePorts
from controller.engine.executor import Executor
from controller.engine.gate_request import GateRequest, GateRunner
from controller.engine.maintenance import Maintenance
from controller.engine.observe import StageMetrics
from controller.engine.passes import Pass, Result, StatusWriter
from controller.engine.restore import RESTORE_DEADLINE
from controller.engine.stage_ops import ReaderFor, StageOps
from controller.engine.steps import Steps
from controller.engine.verdicts import Verdicts
from controller.model.errors import BackendError, ErrorClass, PipectlError, error_class
from controller.model.manifest import Promotion
from controller.model.reasons import Phase, Reason
from controller.model.status import Condition, ReleaseStatus, StageStatus, set_condition
from controller.obs import metrics
from controller.obs.events import EventSink, EventType
from controller.obs.logging import redact
from controller.plan.actions import Plan
from controller.rollout.stages import StageFacts, Step, plan_steps
from controller.source.revision import changed_files, revision
from controller.source.validate import RepoSnapshot
from controller.store.db import Store
from controller.store.suspend import message as suspended_message
from controller.store.suspend import suspension

log = structlog.get_logger(__name__)

ERROR_RETRY = 30.0


class Reconciler:
    def __init__(
        self,
        store: Store,
        ledger: Ledger,
        backends: BackendsFactory,
        gates: GateRunner,
        *,
        reader_for: ReaderFor,
        instance: str = "pipectl",
        checkpoint_root: str = ".pipectl/checkpoints",
        bake_seconds: float = 60.0,
        verify_interval: float = 10.0,
        soak_timeout: float = 600.0,
        restore_deadline: float = RESTORE_DEADLINE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        executor_factory: Callable[[StagePorts], Executor] | None = None,
        on_status: Callable[[str, ReleaseStatus], None] | None = None,
        events: EventSink | None = None,
        pin: Callable[[str, str | None], None] | None = None,
    ):
        self.store = store
        self.clock = clock
        self.stop = threading.Event()
        self.on_status = on_status
        self.store_error: str | None = None
        """Why the state store could not be used by the last pass that tried, until one writes again."""
        self._last: dict[str, ReleaseStatus] = {}
        self.verify_interval = verify_interval
        self.ops = StageOps(
            store,
            ledger,
            backends,
            reader_for,
            clock,
            instance,
            checkpoint_root,
            self.stop,
            executor_factory,
            events,
            pin,
        )
        self.writer = StatusWriter(store, clock, self.ops.emit)
        verdicts = Verdicts(
            self.ops, self.writer, gates, clock, verify_interval, restore_deadline=restore_deadline
        )
        self.restorer = verdicts.restorer
        analysis = Analysis(self.ops, self.writer, verdicts, clock)
        verdicts.on_promoted = analysis.record
        self.steps = Steps(
            self.ops,
            self.writer,
            verdicts,
            clock,
            bake_seconds,
            soak_timeout,
            analysis,
            Maintenance(self.ops, clock),
        )
        self.stage_metrics = StageMetrics(self.ops)

    @property
    def last_plans(self) -> dict[tuple[str, str], Plan]:
        return self.ops.last_plans

    def load_status(self, name: str) -> ReleaseStatus:
        raw = self.store.get_status(name)
        return ReleaseStatus.model_validate(raw) if raw else ReleaseStatus()

    # --- the pass ------------------------------------------------------------------------------

    def reconcile(self, snap: RepoSnapshot, name: str) -> Result:
        result = Result()
        stored: dict[str, Any] | None = None
        try:
            stored = self.store.get_status(name)
            status = ReleaseStatus.model_validate(stored) if stored else ReleaseStatus()
            held = suspension(self.store, name)
        except Exception as e:
            if not _store_outage(e):
                raise
            self._store_unavailable(name, snap.commit, result, e, self._last.get(name) or ReleaseStatus())
            return result
        if held is not None:  # `pipectl suspend`: no plan, apply, gate or promotion until resumed
            self._ready(status, False, Reason.SUSPENDED, suspended_message(held, name))
            self._write_status(name, status)
            return result
        try:
            if name in snap.invalid_releases:
                msg = "; ".join(str(p) for p in snap.invalid_releases[name])
                status.phase, status.observed_commit = Phase.INVALID, snap.commit
                self._ready(status, False, Reason.VALIDATION_FAILED, msg)
                return result
            p = Pass.of(snap, snap.release(name), status, result)
            spec = p.rel.spec.rollout
            metrics.init_release(name, spec.stages, [g.name for g in spec.gates])
            self._pass(p)
            if not result.errors:
                for backend in ("kafka", "hive", "presto", "airflow", "spark"):
                    metrics.set_backend_up(backend, True)
        except Exception as e:
            self._failed(name, snap, status, result, e)
        finally:
            self._save(name, snap.commit, result, status, stored)
        return result

    def _save(
        self,
        name: str,
        commit: str | None,
        result: Result,
        status: ReleaseStatus,
        stored: dict[str, Any] | None = None,
    ) -> None:
        try:
            self._write_status(name, status, stored)
        except Exception as e:
            if not _store_outage(e):
                raise
            self._store_unavailable(name, commit, result, e, status)

    def _store_unavailable(
        self, name: str, commit: str | None, result: Result, e: Exception, status: ReleaseStatus
    ) -> None:
        """The state store cannot be reached: nothing of the release can be read or recorded. The
        release is Ready=False (BackendUnavailable) where it can still be seen — the status hook
        (metrics, the Kubernetes mirror), /healthz, the event stream, the log — and retried."""
        msg = f"state store unavailable: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        self.store_error = msg
        metrics.set_backend_up(metrics.STATE_BACKEND, False)
        metrics.record_reconcile_error(name, Reason.BACKEND_UNAVAILABLE)
        log.error("reconcile failed", release=name, commit=commit, error=msg, error_class="transient")
        self.ops.emit(EventType.CONTROLLER, name, None, reason=Reason.BACKEND_UNAVAILABLE, message=msg,
                      git_commit=commit, detail={"error_class": "transient", "error_type": type(e).__name__})
        self._ready(status, False, Reason.BACKEND_UNAVAILABLE, msg)
        self._last[name] = status
        if self.on_status:
            self.on_status(name, status)
        result.errors.append(msg)
        result.requeue(ERROR_RETRY)

    def _failed(
        self, name: str, snap: RepoSnapshot, status: ReleaseStatus, result: Result, e: Exception
    ) -> None:
        reason, msg = self._record_error(name, snap.commit, None, result, e)
        status.observed_commit = snap.commit
        self._ready(status, False, reason, msg)

    def _record_error(
        self, name: str, commit: str | None, stage: str | None, result: Result, e: Exception
    ) -> tuple[Reason, str]:
        """Log, count and emit one error of a pass; the named reason and message for the status."""
        cls = error_class(e)
        if isinstance(e, BackendError):
            metrics.set_backend_up(e.backend.split(".")[0], False)
            reason = Reason.BACKEND_UNAVAILABLE if cls is ErrorClass.TRANSIENT else Reason.APPLY_FAILED
        elif _store_outage(e):  # the state store went away during the pass (journal, rollout state)
            metrics.set_backend_up(metrics.STATE_BACKEND, False)
            reason = Reason.BACKEND_UNAVAILABLE
        elif cls is ErrorClass.CONFIGURATION:
            reason = Reason.CONFIGURATION_ERROR
        elif isinstance(e, PipectlError):
            reason = Reason.APPLY_FAILED
        else:
            reason = Reason.RECONCILE_ERROR
        msg = str(e) if isinstance(e, PipectlError) else f"{type(e).__name__}: {e}"
        if stage is not None and not msg.startswith(f"stage {stage}: "):
            msg = f"stage {stage}: {msg}"  # once: a configuration error may name its stage already
        if reason is Reason.RECONCILE_ERROR:
            log.exception("reconcile raised", release=name, stage=stage, commit=commit, error_class=str(cls))
        else:
            log.error(
                "reconcile failed", release=name, stage=stage, commit=commit, error=msg, error_class=str(cls)
            )
        metrics.record_reconcile_error(name, reason)
        self.ops.emit(
            EventType.CONTROLLER,
            name,
            stage,
            reason=reason,
            message=msg,
            git_commit=commit,
            detail={"error_class": str(cls), "error_type": type(e).__name__},
        )
        result.errors.append(msg)
        result.requeue(ERROR_RETRY)
        return reason, msg

    def _write_status(self, name: str, status: ReleaseStatus, stored: dict[str, Any] | None = None) -> None:
        """Store ``status``; nothing is written when it equals ``stored``, what the pass read (a
        converged release's no-op pass changes no field: transition times are kept)."""
        try:
            dump = status.model_dump(mode="json", by_alias=True)
            if stored is None or dump != stored:
                self.store.put_status(name, dump)
            metrics.set_backend_up(metrics.STATE_BACKEND, True)
            self.store_error = None
        except Exception:
            metrics.set_backend_up(metrics.STATE_BACKEND, False)
            raise
        finally:
            self._last[name] = status
            if self.on_status:
                self.on_status(name, status)

    def _ready(self, status: ReleaseStatus, ok: bool, reason: str, message: str) -> None:
        cond = Condition(
            type="Ready",
            status="True" if ok else "False",
            reason=reason,
            message=redact(message),
            last_transition_time=self.clock(),
        )
        status.conditions = set_condition(status.conditions, cond)

    def facts(self, p: Pass) -> list[StageFacts]:
        out = []
        digest: str | None = None  # an approval counts for this exact content only
        for stage in p.rel.spec.rollout.stages:
            st = p.status.stages.get(stage, StageStatus())
            promotion = p.envs[stage].spec.promotion
            approval = None
            if promotion is Promotion.APPROVAL:  # only then: no statement per stage and pass for nothing
                digest = digest or revision(p.rel, p.snap.root).digest
                approval = self.store.approval(p.name, stage, p.version, digest)
            restoring = self.ops.rollouts.stage(p.name, stage).restoring
            out.append(
                StageFacts(
                    stage=stage,
                    promotion=promotion,
                    version=st.version,
                    phase=st.phase,
                    approved_by=approval["approver"] if approval else None,
                    waiting_on=tuple(d for d in p.rel.spec.depends_on if not self._dep_ready(d, stage)),
                    canary_of=p.envs[stage].spec.canary_of,
                    restoring=restoring.version if restoring is not None else None,
                )
            )
        return out

    def _pass(self, p: Pass) -> None:
        p.status.version, p.status.observed_commit = p.version, p.commit
        reused = self.reused_version(p)
        if reused:
            if p.status.phase is not Phase.BLOCKED:
                self.store.add_event(p.name, None, "Warning", Reason.VERSION_REUSED, reused)
            p.status.phase = Phase.BLOCKED
            self._ready(p.status, False, Reason.VERSION_REUSED, reused)
            return
        active: str | None = None
        failed: dict[str, tuple[Reason, str]] = {}
        for stage, step, why in plan_steps(p.version, self.facts(p)):
            if step not in (Step.IN_SYNC, Step.NOT_REACHED, Step.HOLD_TARGET):
                active = stage
            try:
                self._run_step(p, stage, step, why)
                if step is Step.IN_SYNC and active is None and p.stage(stage).phase is not Phase.SUCCEEDED:
                    active = stage  # it failed in this pass (post-promotion rollback, refused drift repair)
                self.stage_metrics.export(p, stage)
            except Exception as e:  # a stage's backend outage must not keep the other stages waiting
                failed[stage] = self._record_error(p.name, p.commit, stage, p.result, e)
        self._summarize(p, active, failed)

    def _summarize(self, p: Pass, active: str | None, failed: dict[str, tuple[Reason, str]]) -> None:
        stages = p.rel.spec.rollout.stages
        p.status.current_stage = active or stages[-1]
        top = p.status.stages.get(p.status.current_stage, StageStatus())
        p.status.phase = Phase.SUCCEEDED if active is None else top.phase
        ready = p.status.phase is Phase.SUCCEEDED and not failed
        if failed:  # the active stage's error first, else the first stage's that failed
            reason, message = failed.get(p.status.current_stage) or next(iter(failed.values()))
            self._ready(
                p.status,
                False,
                reason,
                "; ".join(m for _, m in failed.values()) if len(failed) > 1 else message,
            )
        else:
            self._ready(
                p.status,
                ready,
                Reason.RECONCILIATION_SUCCEEDED if ready else (top.reason or Reason.PROGRESSING),
                top.message or "",
            )
        if p.status.phase in (Phase.VERIFYING, Phase.PROGRESSING):
            p.result.requeue(self.verify_interval)

    def reused_version(self, p: Pass) -> str:
        """Why this commit may not deploy (its version's content changed after a stage got it), or ""."""
        recorded = self.ops.rollouts.history(p.name).revisions.get(p.version)
        if recorded is None:
            return ""
        now = revision(p.rel, p.snap.root)
        if now.digest == recorded.digest:
            return ""
        files = ", ".join(changed_files(recorded.files, now.files)) or "(none)"
        at = (recorded.commit or "?")[:12]
        return (
            f"version {p.version} was deployed to {recorded.stage} at commit {at} with other content; "
            f"changed: {files}. Bump spec.version to roll the change out through the gates"
        )

    def _run_step(self, p: Pass, stage: str, step: Step, why: str) -> None:
        if step is Step.IN_SYNC:
            self.steps.in_sync(p, stage)
        elif step is Step.DEPLOY:
            self.steps.deploy(p, stage)
        elif step is Step.AWAIT_APPROVAL:
            self.steps.hold(p, stage)
            self.writer.set(p, stage, Phase.PENDING, Reason.AWAITING_APPROVAL, why)
            p.result.requeue(5.0)
        elif step is Step.BLOCKED:
            self.writer.set(p, stage, Phase.BLOCKED, Reason.DEPENDENCY_NOT_READY, f"Blocked: {why}")
            p.result.requeue(15.0)
        elif step is Step.HALTED:
            self.steps.hold(p, stage, stop_version=p.version)
        elif step is Step.HOLD_TARGET:
            self.steps.hold_target(p, stage, why)
        elif step is Step.RESTORING:
            self.restorer.resume(p, stage)
        else:  # NOT_REACHED
            self.steps.hold(p, stage)
            held = p.status.stages.get(stage)
            if held is None or held.version is None:
                self.writer.set(p, stage, Phase.PENDING, Reason.PREVIOUS_STAGE_NOT_READY, why)

    def _dep_ready(self, dep: str, stage: str) -> bool:
        raw = self.store.get_status(dep)
        if not raw:
            return False
        st = raw.get("stages", {}).get(stage)
        return bool(st and st.get("phase") == Phase.SUCCEEDED)


def _store_outage(e: Exception) -> bool:
    """A transient error of the state store's database driver (SQLAlchemy, psycopg, sqlite3)."""
    driver = (type(e).__module__ or "").split(".")[0]
    return error_class(e) is ErrorClass.TRANSIENT and driver in ("sqlalchemy", "psycopg", "sqlite3")


__all__ = ["GateRequest", "GateRunner", "Path", "Reconciler", "Result"]
