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
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controller.adapters._retry import retrying
from controller.adapters.base import ApplyResult, CallStats
from controller.model.errors import BackendError, PermanentBackendError
from controller.model.identifiers import IdentifierError, check_spark_conf_key
from controller.plan.actions import Action, Op
from controller.plan.desired import digest
from controller.plan.resources import Owner, Resource, ResourceKind, StreamingJobResource
from controller.plan.rules.spark import effective_checkpoint, job_changes

log = structlog.get_logger(__name__)

BACKEND = "spark"
JOB_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
LIFECYCLE_ARGS = ("--status-file", "--stop-file")
# The directory that holds the ``controller`` package: jobs import ``controller.jobkit`` from it.
PIPECTL_ROOT = Path(__file__).resolve().parents[2]
# Variables a spark-submit process needs from the controller's environment; nothing else leaks.
_PASSTHROUGH_ENV = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR", "JAVA_HOME")
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")

T = TypeVar("T")


# --- models -----------------------------------------------------------------------------------


class JobRecord(BaseModel):
    """One registry entry: what was started, as what process, and where its files are."""

    model_config = ConfigDict(extra="forbid")
    name: str
    version: str
    entrypoint: str
    entrypoint_digest: str
    args: list[str] = Field(description="The desired args, without the runner's additions.")
    conf: dict[str, str]
    checkpoint: str = Field(description="The declared checkpoint.")
    effective_checkpoint: str = Field(description="The directory the job actually runs on.")
    strategy: str
    owner: Owner | None = None
    argv: list[str]
    pid: int | None = None
    start_ticks: int | None = Field(default=None, description="/proc/<pid>/stat starttime (clock ticks).")
    boot_id: str | None = None
    started_at: datetime
    stopped_at: datetime | None = None
    status_file: str
    stop_file: str
    log_file: str

    def resource(self, *, running: bool) -> StreamingJobResource:
        return StreamingJobResource(
            name=self.name, owner=self.owner, version=self.version, entrypoint=self.entrypoint,
            entrypoint_digest=self.entrypoint_digest, args=list(self.args), conf=dict(self.conf),
            checkpoint=self.checkpoint, running=running, strategy=self.strategy,
        )


class JobState(BaseModel):
    """A registry entry plus what the runner saw now: is the process alive, its last progress."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    record: JobRecord
    alive: bool
    progress: dict[str, Any] | None = None


class SourceProgress(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    description: str
    end_offsets: dict[str, dict[int, int]] = Field(
        default_factory=dict, description="topic → partition → offset processed up to (Kafka sources)."
    )
    latest_offsets: dict[str, dict[int, int]] = Field(
        default_factory=dict, description="topic → partition → latest offset seen at the batch."
    )
    input_rows_per_second: float | None = None
    processed_rows_per_second: float | None = None


class JobProgress(BaseModel):
    """The last StreamingQueryProgress a job reported (consumer lag is computed elsewhere)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str | None
    query_id: str
    run_id: str
    batch_id: int
    num_input_rows: int | None = None
    input_rows_per_second: float | None = None
    processed_rows_per_second: float | None = None
    batch_duration_ms: int | None = Field(default=None, description="durationMs.triggerExecution")
    watermark: str | None = None
    timestamp: datetime
    sources: list[SourceProgress] = Field(default_factory=list)

    @property
    def end_offsets(self) -> dict[str, dict[int, int]]:
        """All Kafka sources' processed offsets merged: topic → partition → offset."""
        out: dict[str, dict[int, int]] = {}
        for s in self.sources:
            for topic, parts in s.end_offsets.items():
                out.setdefault(topic, {}).update(parts)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobProgress:
        sources = [
            SourceProgress(
                description=str(s.get("description", "")),
                end_offsets=_kafka_offsets(s.get("endOffset")),
                latest_offsets=_kafka_offsets(s.get("latestOffset")),
                input_rows_per_second=_float(s.get("inputRowsPerSecond")),
                processed_rows_per_second=_float(s.get("processedRowsPerSecond")),
            )
            for s in data.get("sources") or []
        ]
        duration = (data.get("durationMs") or {}).get("triggerExecution")
        return cls(
            name=data.get("name"),
            query_id=str(data["id"]),
            run_id=str(data["runId"]),
            batch_id=int(data["batchId"]),
            num_input_rows=data.get("numInputRows"),
            input_rows_per_second=_float(data.get("inputRowsPerSecond")),
            processed_rows_per_second=_float(data.get("processedRowsPerSecond")),
            batch_duration_ms=int(duration) if duration is not None else None,
            watermark=(data.get("eventTime") or {}).get("watermark"),
            timestamp=datetime.fromisoformat(str(data["timestamp"]).replace("Z", "+00:00")),
            sources=sources,
        )


def _float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _kafka_offsets(v: Any) -> dict[str, dict[int, int]]:
    """Kafka source offsets (``{"topic": {"0": 12}}``, possibly as a JSON string); {} for other sources."""
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            return {}
    if not isinstance(v, dict):
        return {}
    out: dict[str, dict[int, int]] = {}
    for topic, parts in v.items():
        if not isinstance(parts, dict):
            return {}
        try:
            out[str(topic)] = {int(p): int(o) for p, o in parts.items()}
        except (TypeError, ValueError):
            return {}
    return out


# --- runner -----------------------------------------------------------------------------------


class JobRunner(Protocol):
    """Where streaming jobs run. Every method is idempotent on the job's current state."""

    def start(self, job: StreamingJobResource) -> JobState:
        """Start the job (it must not be running) and record it."""
        ...

    def stop(self, name: str, timeout: float) -> bool:
        """Stop after the current batch (escalating after ``timeout`` s); False if it was not running."""
        ...

    def kill(self, name: str) -> bool:
        """Kill at once (SIGKILL); False if it was not running."""
        ...

    def list(self, names: Sequence[str] | None = None) -> dict[str, JobState]:
        """Registered jobs (the named ones, or all) with liveness and last progress, in one pass."""
        ...

    def forget(self, name: str) -> bool:
        """Remove a stopped job's registry entry (its checkpoint stays); False if there was none."""
        ...


def check_job_name(name: str) -> str:
    if not JOB_NAME_RE.match(name):
        raise PermanentBackendError(BACKEND, f"invalid job name {name!r}: allowed are [A-Za-z0-9._-]")
    return name


def _write_json_atomic(path: Path, data: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, starttime) of a process from /proc, or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _boot_id() -> str | None:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return None


def _now() -> datetime:
    return datetime.now(UTC)


class LocalRunner:
    """Runs jobs as detached local ``spark-submit`` processes; the registry lives under ``state_dir``."""

    def __init__(
        self,
        state_dir: Path,
        repo_root: Path,
        env: dict[str, str],
        master: str = "local[2]",
        *,
        driver_memory: str = "512m",
        term_grace: float = 15.0,
        startup_grace: float = 2.0,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.jobs_dir = self.state_dir / "jobs"
        self.repo_root = Path(repo_root).resolve()
        self.master = master
        self.driver_memory = driver_memory
        self.term_grace = term_grace
        self.startup_grace = startup_grace
        self.env = self._process_env(env)
        self.spark_home = Path(self.env["SPARK_HOME"])
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    @staticmethod
    def _process_env(env: dict[str, str]) -> dict[str, str]:
        out = {k: os.environ[k] for k in _PASSTHROUGH_ENV if k in os.environ}
        out.update(env)
        if "SPARK_HOME" not in out:
            spec = importlib.util.find_spec("pyspark")
            if spec is None or spec.origin is None:
                raise PermanentBackendError(BACKEND, "SPARK_HOME is not set and pyspark is not installed")
            out["SPARK_HOME"] = str(Path(spec.origin).parent)
        out.setdefault("PYSPARK_PYTHON", sys.executable)
        out["PYTHONPATH"] = os.pathsep.join(p for p in (str(PIPECTL_ROOT), out.get("PYTHONPATH")) if p)
        return out

    # --- registry ------------------------------------------------------------------------------

    def _record_path(self, name: str) -> Path:
        return self.jobs_dir / f"{check_job_name(name)}.json"

    def _read(self, name: str) -> JobRecord | None:
        try:
            return JobRecord.model_validate_json(self._record_path(name).read_text())
        except FileNotFoundError:
            return None
        except ValidationError as e:
            raise PermanentBackendError(BACKEND, f"registry entry for {name} is unreadable: {e}") from e

    def _write(self, rec: JobRecord) -> None:
        _write_json_atomic(self._record_path(rec.name), rec.model_dump_json(indent=2))

    # --- processes -----------------------------------------------------------------------------

    def _alive(self, rec: JobRecord) -> bool:
        if rec.pid is None:
            return False
        proc = self._procs.get(rec.pid)
        if proc is not None and proc.poll() is not None:
            del self._procs[rec.pid]
            return False
        stat = _proc_stat(rec.pid)
        if stat is None:
            return False
        state, ticks = stat
        if state in ("Z", "X"):
            self._reap(rec.pid)
            return False
        return ticks == rec.start_ticks and (rec.boot_id is None or rec.boot_id == _boot_id())

    @staticmethod
    def _reap(pid: int) -> None:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass  # not our child: its parent reaps it

    def _signal(self, rec: JobRecord, sig: signal.Signals) -> None:
        """Signal the job's process group (JVM + Python driver), only if it is still the same process."""
        if rec.pid is None or not self._alive(rec):
            return
        try:
            os.killpg(rec.pid, sig)
        except ProcessLookupError:
            pass

    def _wait_dead(self, rec: JobRecord, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._alive(rec):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)
        return True

    def _mark_stopped(self, rec: JobRecord) -> None:
        rec.stopped_at = _now()
        self._write(rec)

    # --- JobRunner -----------------------------------------------------------------------------

    def _argv(
        self, job: StreamingJobResource, entrypoint: Path, args: list[str], status: Path, stop: Path
    ) -> list[str]:
        conf = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false", **job.conf}
        argv = [
            str(self.spark_home / "bin" / "spark-submit"),
            "--master", self.master,
            "--name", job.name,
            "--driver-memory", self.driver_memory,
        ]
        for key, value in conf.items():
            try:
                check_spark_conf_key(key)
            except IdentifierError as e:
                raise PermanentBackendError(BACKEND, str(e)) from e
            if any(ord(c) < 32 for c in value):
                raise PermanentBackendError(BACKEND, f"Spark conf {key} has control characters in its value")
            argv += ["--conf", f"{key}={value}"]
        return [*argv, str(entrypoint), *args, "--status-file", str(status), "--stop-file", str(stop)]

    def _entrypoint(self, job: StreamingJobResource) -> Path:
        path = (self.repo_root / job.entrypoint).resolve()
        if not path.is_relative_to(self.repo_root):
            raise PermanentBackendError(BACKEND, f"entrypoint {job.entrypoint!r} is outside the repository")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise PermanentBackendError(BACKEND, f"entrypoint {job.entrypoint!r} cannot be read: {e}") from e
        # Never run code other than what was planned (a different checkout, an edit since).
        if digest(data) != job.entrypoint_digest:
            raise PermanentBackendError(
                BACKEND,
                f"entrypoint {job.entrypoint} on disk is {digest(data)}, planned {job.entrypoint_digest}",
            )
        return path

    def start(self, job: StreamingJobResource) -> JobState:
        name = check_job_name(job.name)
        old = self._read(name)
        if old is not None and self._alive(old):
            raise PermanentBackendError(BACKEND, f"job {name} is already running (pid {old.pid})")
        entrypoint = self._entrypoint(job)
        if any(a in LIFECYCLE_ARGS for a in job.args):
            raise PermanentBackendError(BACKEND, f"job {name}: {', '.join(LIFECYCLE_ARGS)} are the runner's")
        ckpt = effective_checkpoint(job)
        args = list(job.args)
        if ckpt != job.checkpoint:
            args = [ckpt if i > 0 and args[i - 1] == "--checkpoint" else a for i, a in enumerate(args)]
        run_dir = self.jobs_dir / name
        run_dir.mkdir(parents=True, exist_ok=True)
        status, stop, log_file = run_dir / "status.json", run_dir / "stop", run_dir / "driver.log"
        stop.unlink(missing_ok=True)
        # The earlier run's progress must not pass for this one's; keep it beside for people.
        if status.exists():
            os.replace(status, run_dir / "status.prev.json")
        argv = self._argv(job, entrypoint, args, status, stop)
        started_at = _now()
        with open(log_file, "ab") as out:
            out.write(f"\n=== pipectl: starting {name} {job.version} at {started_at.isoformat()}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                argv, cwd=self.repo_root, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            )
        self._procs[proc.pid] = proc
        stat = _proc_stat(proc.pid)
        rec = JobRecord(
            name=name, version=job.version, entrypoint=job.entrypoint,
            entrypoint_digest=job.entrypoint_digest, args=list(job.args), conf=dict(job.conf),
            checkpoint=job.checkpoint, effective_checkpoint=ckpt,
            strategy=job.strategy, owner=job.owner, argv=argv, pid=proc.pid,
            start_ticks=stat[1] if stat else None, boot_id=_boot_id(), started_at=started_at,
            status_file=str(status), stop_file=str(stop), log_file=str(log_file),
        )
        self._write(rec)
        log.info("spark.job.started", job=name, version=job.version, pid=proc.pid, checkpoint=ckpt)
        deadline = time.monotonic() + self.startup_grace
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                self._mark_stopped(rec)
                raise PermanentBackendError(
                    BACKEND, f"job {name} exited at start with code {code}:\n{_tail(log_file)}"
                )
            time.sleep(0.2)
        return JobState(record=rec, alive=self._alive(rec))

    def stop(self, name: str, timeout: float) -> bool:
        rec = self._read(name)
        if rec is None or not self._alive(rec):
            return False
        Path(rec.stop_file).touch()
        log.info("spark.job.stop_requested", job=name, pid=rec.pid, timeout=timeout)
        if self._wait_dead(rec, timeout):
            log.info("spark.job.stopped", job=name, pid=rec.pid, graceful=True)
        else:
            log.warning("spark.job.stop_timeout_sigterm", job=name, pid=rec.pid, waited=timeout)
            self._signal(rec, signal.SIGTERM)
            if not self._wait_dead(rec, self.term_grace):
                log.error("spark.job.sigterm_ignored_sigkill", job=name, pid=rec.pid, waited=self.term_grace)
                self._signal(rec, signal.SIGKILL)
                if not self._wait_dead(rec, 10.0):
                    raise PermanentBackendError(BACKEND, f"job {name} (pid {rec.pid}) survived SIGKILL")
        self._mark_stopped(rec)
        return True

    def kill(self, name: str) -> bool:
        rec = self._read(name)
        if rec is None or not self._alive(rec):
            return False
        log.warning("spark.job.kill", job=name, pid=rec.pid)
        self._signal(rec, signal.SIGKILL)
        if not self._wait_dead(rec, 10.0):
            raise PermanentBackendError(BACKEND, f"job {name} (pid {rec.pid}) survived SIGKILL")
        self._mark_stopped(rec)
        return True

    def list(self, names: Sequence[str] | None = None) -> dict[str, JobState]:
        if names is None:
            paths = sorted(self.jobs_dir.glob("*.json")) if self.jobs_dir.exists() else []
            names = [p.stem for p in paths]
        out: dict[str, JobState] = {}
        for name in names:
            rec = self._read(name)
            if rec is not None:
                progress = _read_progress(rec.status_file)
                out[name] = JobState(record=rec, alive=self._alive(rec), progress=progress)
        return out

    def forget(self, name: str) -> bool:
        rec = self._read(name)
        if rec is None:
            return False
        if self._alive(rec):
            raise PermanentBackendError(BACKEND, f"job {name} is running; stop it before forgetting it")
        self._record_path(name).unlink(missing_ok=True)
        log.info("spark.job.forgotten", job=name, checkpoint=rec.effective_checkpoint)
        return True


def _read_progress(path: str) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _where(s: JobState) -> str:
    return f"{s.record.version} on {s.record.effective_checkpoint} (pid {s.record.pid})"


# --- adapter ----------------------------------------------------------------------------------


class SparkAdapter:
    """The Adapter for ``ResourceKind.STREAMING_JOB``; every runner call counts as one round trip."""

    kinds = frozenset({ResourceKind.STREAMING_JOB})

    def __init__(self, runner: JobRunner, *, stop_timeout: float = 120.0) -> None:
        self.runner = runner
        self.stop_timeout = stop_timeout
        self.stats = CallStats()

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
        if action.op is Op.REFUSE:
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
            self._call("stop", lambda: self.runner.stop(desired.name, self.stop_timeout))
            return ApplyResult(action_id=action_id, changed=True, message="stopped after the current batch")
        if state is not None and alive:
            if not job_changes(desired, state.record.resource(running=True)):
                return ApplyResult(action_id=action_id, changed=False, message="running as desired")
            self._call("stop", lambda: self.runner.stop(desired.name, self.stop_timeout))
            started = self._call("start", lambda: self.runner.start(desired))
            return ApplyResult(action_id=action_id, changed=True, message="restarted " + _where(started))
        started = self._call("start", lambda: self.runner.start(desired))
        return ApplyResult(action_id=action_id, changed=True, message="started " + _where(started))

    def _delete(self, action: Action) -> ApplyResult:
        state = self._list([action.name]).get(action.name)
        if state is None:
            return ApplyResult(action_id=action.id, changed=False, message="not registered")
        if state.alive:
            self._call("stop", lambda: self.runner.stop(action.name, self.stop_timeout))
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
            self._call("stop", lambda: self.runner.stop(name, self.stop_timeout))
        started = self._call("start", lambda: self.runner.start(spec))
        return ApplyResult(action_id=f"StreamingJob/{name}/restart", changed=True, message=_where(started))

    def kill(self, name: str) -> ApplyResult:
        """SIGKILL the job (crash tests); changed=False when it was not running."""
        killed = self._call("kill", lambda: self.runner.kill(name))
        return ApplyResult(action_id=f"StreamingJob/{name}/kill", changed=killed)
