"""Spark Structured Streaming jobs: observe and apply through a ``JobRunner``.

The adapter decides nothing: ``controller.plan.rules.spark`` plans, this module carries out one
action at a time through a runner. The runner interface is small (start, stop, kill, list,
forget) so a Kubernetes runner can follow the local one.

``LocalRunner`` runs each job as a detached ``spark-submit`` process (an argv list, never a shell
string; its own session, so the JVM and the Python driver form one process group) and keeps a
registry that survives a controller restart: one JSON file per job, ``state_dir/jobs/<name>.json``,
written atomically. Runtime files live beside it in ``state_dir/jobs/<name>/``: the status file
the job writes its latest progress to (``status.prev.json`` keeps the previous run's last one),
the stop file that asks it to stop after the current batch, and the driver log. A job is
running when its recorded pid is alive *and* is the same process: pid, kernel start time
(``/proc/<pid>/stat`` field 22) and boot id must all match, so a reused pid is never mistaken
for the job. Signals go to the job's process group, and only after that identity check.

The job-side half of the contract (``--status-file``/``--stop-file``, appended to every job's
args) is ``controller.jobkit.lifecycle``.

Checkpoints: every job runs on its declared checkpoint; desired state gives blueGreen/canary jobs
one per version (``plan.desired.checkpoint_dir``). Relative checkpoint paths resolve against
``repo_root`` (the job's working directory).
Stopping or deleting a job never removes its checkpoint.

Beside this module (the adapter): ``spark_records`` holds the registry records, the reported
progress and the ``JobRunner`` interface, ``spark_runner`` the ``LocalRunner``, ``spark_standalone``
the ``StandaloneRunner`` (``deployMode: cluster``: supervised drivers on a Spark standalone master,
tracked by submission id). Their public names are importable from here too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import structlog
from pydantic import ValidationError

from controller.adapters._retry import retrying
from controller.adapters.base import ApplyResult, CallStats
from controller.adapters.spark_records import BACKEND as BACKEND
from controller.adapters.spark_records import JOB_NAME_RE as JOB_NAME_RE
from controller.adapters.spark_records import JobProgress as JobProgress
from controller.adapters.spark_records import JobRecord as JobRecord
from controller.adapters.spark_records import JobRunner as JobRunner
from controller.adapters.spark_records import JobState as JobState
from controller.adapters.spark_records import SourceProgress as SourceProgress
from controller.adapters.spark_records import check_job_name as check_job_name
from controller.adapters.spark_runner import LIFECYCLE_ARGS as LIFECYCLE_ARGS
from controller.adapters.spark_runner import PIPECTL_ROOT as PIPECTL_ROOT
from controller.adapters.spark_runner import LocalRunner as LocalRunner
from controller.model.errors import BackendError, NotReadyYet, PermanentBackendError
from controller.model.reasons import Reason
from controller.plan.actions import Action, Op
from controller.plan.resources import Resource, ResourceKind, StreamingJobResource
from controller.plan.rules.spark import job_changes

log = structlog.get_logger(__name__)

T = TypeVar("T")


def _where(s: JobState) -> str:
    where = f"driver {s.record.submission_id}" if s.record.submission_id else f"pid {s.record.pid}"
    return f"{s.record.version} on {s.record.effective_checkpoint} ({where})"


# --- adapter ----------------------------------------------------------------------------------


class SparkAdapter:
    """The Adapter for ``ResourceKind.STREAMING_JOB``; every runner call counts as one round trip."""

    kinds = frozenset({ResourceKind.STREAMING_JOB})

    def __init__(self, runner: JobRunner, *, stop_timeout: float = 120.0) -> None:
        self.runner = runner
        self.stop_timeout = stop_timeout
        self.stats = CallStats()
        self.requeue_waits = False
        """True in the controller: a stop that is still running raises ``NotReadyYet`` (the pass is
        requeued) instead of blocking the worker until the job has finished its batch."""

    def _stop(self, name: str) -> None:
        if not self.requeue_waits:
            self._call("stop", lambda: self.runner.stop(name, self.stop_timeout))
            return
        if not self._call("stop", lambda: self.runner.request_stop(name, self.stop_timeout)):
            raise NotReadyYet(
                BACKEND, f"job {name}: stopping after its current batch", Reason.AWAITING_BACKEND, 2.0
            )

    def _call(self, op: str, fn: Callable[[], T]) -> T:
        self.stats.count(op)
        try:
            return fn()
        except BackendError:
            raise
        except OSError as e:
            raise PermanentBackendError(BACKEND, f"{op}: {e}") from e

    @retrying()
    def _list(self, names: Sequence[str] | None) -> dict[str, JobState]:
        return self._call("list", lambda: self.runner.list(names))

    def observe(self, kind: ResourceKind, names: Sequence[str]) -> dict[str, Resource]:
        if kind is not ResourceKind.STREAMING_JOB:
            raise ValueError(f"SparkAdapter does not observe {kind}")
        return {n: s.record.resource(running=s.alive) for n, s in self._list(list(names)).items()}

    def snapshot_scope(self, kind: ResourceKind, name: str) -> str | None:
        """The runner's registry is one scope (``engine.snapshot``)."""
        return "jobs" if kind is ResourceKind.STREAMING_JOB else None

    def observe_scope(self, scope: str) -> dict[tuple[ResourceKind, str], Resource]:
        """Every registered job, from one registry read."""
        if scope != "jobs":
            raise ValueError(f"no Spark scope {scope!r}")
        return {(ResourceKind.STREAMING_JOB, n): r for n, r in self.observe_all().items()}

    def observe_all(self) -> dict[str, StreamingJobResource]:
        """Every registered job (prune candidates)."""
        return {n: s.record.resource(running=s.alive) for n, s in self._list(None).items()}

    def progress_all(self, names: Sequence[str]) -> dict[str, JobProgress]:
        """Last progress of the named jobs that reported one (one registry pass)."""
        out: dict[str, JobProgress] = {}
        for n, s in self._list(list(names)).items():
            if s.progress is not None:
                try:
                    out[n] = JobProgress.from_json(s.progress)
                except (KeyError, TypeError, ValueError, ValidationError):
                    log.warning("spark.job.progress_unreadable", job=n)
        return out

    def progress(self, name: str) -> JobProgress | None:
        return self.progress_all([name]).get(name)

    def apply(self, action: Action) -> ApplyResult:
        if action.kind is not ResourceKind.STREAMING_JOB:
            raise PermanentBackendError(BACKEND, f"cannot apply {action.kind} actions")
        if action.op is Op.REFUSE or action.pending:  # a refusal, or awaiting approval
            raise PermanentBackendError(BACKEND, f"refused action cannot be applied: {action.describe()}")
        if action.op is Op.DELETE:
            return self._delete(action)
        if not isinstance(action.desired, StreamingJobResource):
            raise PermanentBackendError(BACKEND, f"{action.id} carries no desired streaming job")
        return self._converge(action.id, action.desired)

    def _converge(self, action_id: str, desired: StreamingJobResource) -> ApplyResult:
        # Re-check: the effect may already be present (idempotent apply).
        state = self._list([desired.name]).get(desired.name)
        alive = state is not None and state.alive
        if not desired.running:
            if not alive:
                return ApplyResult(action_id=action_id, changed=False, message="not running")
            self._stop(desired.name)
            return ApplyResult(action_id=action_id, changed=True, message="stopped after the current batch")
        if state is not None and alive:
            if not job_changes(desired, state.record.resource(running=True)):
                return ApplyResult(action_id=action_id, changed=False, message="running as desired")
            self._stop(desired.name)
            started = self._call("start", lambda: self.runner.start(desired))
            return ApplyResult(action_id=action_id, changed=True, message="restarted " + _where(started))
        started = self._call("start", lambda: self.runner.start(desired))
        return ApplyResult(action_id=action_id, changed=True, message="started " + _where(started))

    def _delete(self, action: Action) -> ApplyResult:
        state = self._list([action.name]).get(action.name)
        if state is None:
            return ApplyResult(action_id=action.id, changed=False, message="not registered")
        if state.alive:
            self._stop(action.name)
        self._call("forget", lambda: self.runner.forget(action.name))
        return ApplyResult(
            action_id=action.id, changed=True,
            message=f"stopped and forgotten; checkpoint {state.record.effective_checkpoint} kept",
        )

    def restart(self, name: str) -> ApplyResult:
        """Stop after the current batch (if running) and start the same spec again."""
        state = self._list([name]).get(name)
        if state is None:
            raise PermanentBackendError(BACKEND, f"job {name} is not registered")
        spec = state.record.resource(running=True)
        if state.alive:
            self._stop(name)
        started = self._call("start", lambda: self.runner.start(spec))
        return ApplyResult(action_id=f"StreamingJob/{name}/restart", changed=True, message=_where(started))

    def kill(self, name: str) -> ApplyResult:
        """SIGKILL the job (crash tests); changed=False when it was not running."""
        killed = self._call("kill", lambda: self.runner.kill(name))
        return ApplyResult(action_id=f"StreamingJob/{name}/kill", changed=killed)
