"""One pass over one release, as a value: its inputs (snapshot, release, environments, upstream
releases) and what it collects (status changes, requeue, errors).

Everything a pass needs travels in ``Pass``; nothing is kept on the ``Reconciler`` between passes,
so several workers can run passes of different releases at once. ``StatusWriter`` is the one place
a stage's phase changes: it stamps the transition time and emits the transition event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from controller.model.manifest import Environment, PipelineRelease
from controller.model.reasons import Phase
from controller.model.status import GateResult, ReleaseStatus, StageStatus
from controller.obs.events import EventType
from controller.obs.logging import redact
from controller.plan.desired import StageContext, stage_context
from controller.source.validate import RepoSnapshot
from controller.store.db import Store


@dataclass
class Result:
    """What a pass asks of the work queue (controller-runtime's ``reconcile.Result``)."""

    requeue_after: float | None = None
    changed: bool = False
    errors: list[str] = field(default_factory=list)

    def requeue(self, seconds: float) -> None:
        self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)


@dataclass
class Pass:
    snap: RepoSnapshot
    rel: PipelineRelease
    status: ReleaseStatus
    envs: dict[str, Environment]
    upstream: list[PipelineRelease]
    result: Result

    @classmethod
    def of(cls, snap: RepoSnapshot, rel: PipelineRelease, status: ReleaseStatus, result: Result) -> Pass:
        envs = {n: snap.environment(n) for n in snap.environments}
        upstream = [snap.release(d) for d in rel.spec.depends_on if d in snap.releases]
        return cls(snap, rel, status, envs, upstream, result)

    @property
    def name(self) -> str:
        return self.rel.name

    @property
    def version(self) -> str:
        return self.rel.spec.version

    @property
    def commit(self) -> str | None:
        return self.snap.commit

    def ctx(self, stage: str) -> StageContext:
        return stage_context(stage, self.envs)

    def stage(self, stage: str) -> StageStatus:
        return self.status.stages.setdefault(stage, StageStatus())


Emit = Callable[..., None]


@dataclass
class StatusWriter:
    store: Store
    clock: Callable[[], datetime]
    emit: Emit

    def set(
        self,
        p: Pass,
        stage: str,
        phase: Phase,
        reason: str,
        message: str = "",
        *,
        version: str | None = None,
        commit: str | None = None,
        gates: list[GateResult] | None = None,
    ) -> None:
        message = redact(message)  # exception text may carry a secret: never into status or events
        st = p.stage(stage)
        if st.phase != phase or (version is not None and st.version != version):
            self.emit(
                EventType.TRANSITION,
                p.name,
                stage,
                version=version or st.version,
                phase=str(phase),
                reason=reason,
                message=message,
                detail={"from": str(st.phase), "to": str(phase)},
            )
            st.last_transition_time = self.clock()
            bad = phase in (Phase.FAILED, Phase.ROLLED_BACK, Phase.ROLLBACK_FAILED, Phase.INVALID)
            self.store.add_event(p.name, stage, "Warning" if bad else "Normal", reason, message or f"{phase}")
        st.phase, st.reason, st.message = phase, reason, message
        if version is not None:
            st.version = version
        if commit is not None:
            st.git_commit = commit
        if gates is not None:
            st.gates = gates
