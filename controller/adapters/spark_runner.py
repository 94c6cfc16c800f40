"""``LocalRunner``: streaming jobs as detached local ``spark-submit`` processes, with a registry
of JSON files under ``state_dir`` that survives a controller restart (see ``controller.adapters.spark``
for the registry layout, the process identity check and the job-side lifecycle contract).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError

from controller.adapters.spark_records import BACKEND, JobRecord, JobState, check_job_name
from controller.model.endpoints import SPARK_DEPLOY_MODES
from controller.model.errors import PermanentBackendError
from controller.model.identifiers import IdentifierError, check_spark_conf_key
from controller.plan.desired import digest
from controller.plan.resources import StreamingJobResource
from controller.plan.rules.spark import effective_checkpoint

# The runner logs under the Spark adapter's name, as it did before it had a module of its own.
log = structlog.get_logger("controller.adapters.spark")

LIFECYCLE_ARGS = ("--status-file", "--stop-file")
# The directory that holds the ``controller`` package: jobs import ``controller.jobkit`` from it.
PIPECTL_ROOT = Path(__file__).resolve().parents[2]
# Variables a spark-submit process needs from the controller's environment; nothing else leaks.
_PASSTHROUGH_ENV = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR", "JAVA_HOME")
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


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


def _pids_with_arg(arg: str) -> list[int]:
    """Processes whose command line holds ``arg`` as one argument (the process group leaders first)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if arg.encode() in argv:
            out.append(int(d.name))
    return sorted(out, key=lambda pid: (_pgid(pid) != pid, pid))


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _boot_id() -> str | None:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return None


def _now() -> datetime:
    return datetime.now(UTC)


def run_args(job: StreamingJobResource) -> tuple[list[str], str]:
    """The job's args on its effective checkpoint, and that checkpoint; its own --status-file or
    --stop-file is refused (they are the runner's)."""
    if any(a in LIFECYCLE_ARGS for a in job.args):
        raise PermanentBackendError(BACKEND, f"job {job.name}: {', '.join(LIFECYCLE_ARGS)} are the runner's")
    ckpt = effective_checkpoint(job)
    args = list(job.args)
    if ckpt != job.checkpoint:
        args = [ckpt if i > 0 and args[i - 1] == "--checkpoint" else a for i, a in enumerate(args)]
    return args, ckpt


class LocalRunner:
    """Runs jobs as detached local ``spark-submit`` processes; the registry lives under ``state_dir``."""

    def __init__(
        self,
        state_dir: Path,
        repo_root: Path,
        env: dict[str, str],
        master: str = "local[2]",
        *,
        deploy_mode: str = "client",
        driver_memory: str = "512m",
        term_grace: float = 15.0,
        startup_grace: float = 2.0,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.jobs_dir = self.state_dir / "jobs"
        self.repo_root = Path(repo_root).resolve()
        if deploy_mode != SPARK_DEPLOY_MODES[0]:
            # The runner supervises the driver as its own child process: only client mode does that.
            raise PermanentBackendError(BACKEND, f"deploy mode {deploy_mode!r}: LocalRunner runs client only")
        self.master = master
        self.deploy_mode = deploy_mode
        self.driver_memory = driver_memory
        self.term_grace = term_grace
        self.startup_grace = startup_grace
        self.env = self._process_env(env)
        self.spark_home = Path(self.env["SPARK_HOME"])
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._stopping: dict[tuple[str, int | None], float] = {}

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
        if rec.pid is None and rec.stopped_at is None:
            self._adopt(rec)
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

    def _adopt(self, rec: JobRecord) -> None:
        """A record written just before its process started (the start was interrupted): find the
        process by the job's own --stop-file argument and record it, or mark the start as not done."""
        for pid in _pids_with_arg(rec.stop_file):
            stat = _proc_stat(pid)
            if stat is not None and stat[0] not in ("Z", "X"):
                rec.pid, rec.start_ticks = pid, stat[1]
                self._write(rec)
                log.warning("spark.job.adopted", job=rec.name, pid=pid)
                return
        rec.stopped_at = _now()  # no process: the start never happened; the next pass starts it
        self._write(rec)

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

    def _wait_dead(self, rec: JobRecord, timeout: float, poll: float = 0.2) -> bool:
        # Only the blocking verbs (CLI stop/kill) wait; the controller uses request_stop.
        deadline = time.monotonic() + timeout
        while self._alive(rec):
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)
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
            "--deploy-mode", self.deploy_mode,
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

    def _prepare_run(self, job: StreamingJobResource) -> tuple[Path, list[str], str, tuple[Path, Path, Path]]:
        """Entrypoint (digest checked), args on the effective checkpoint, and the run's status,
        stop and log files (a fresh stop file; the previous status kept as status.prev.json)."""
        entrypoint = self._entrypoint(job)
        args, ckpt = run_args(job)
        run_dir = self.jobs_dir / check_job_name(job.name)
        run_dir.mkdir(parents=True, exist_ok=True)
        status, stop, log_file = run_dir / "status.json", run_dir / "stop", run_dir / "driver.log"
        stop.unlink(missing_ok=True)
        # The earlier run's progress must not pass for this one's; keep it beside for people.
        if status.exists():
            os.replace(status, run_dir / "status.prev.json")
        return entrypoint, args, ckpt, (status, stop, log_file)

    def start(self, job: StreamingJobResource) -> JobState:
        name = check_job_name(job.name)
        old = self._read(name)
        if old is not None and self._alive(old):
            raise PermanentBackendError(BACKEND, f"job {name} is already running (pid {old.pid})")
        entrypoint, args, ckpt, (status, stop, log_file) = self._prepare_run(job)
        argv = self._argv(job, entrypoint, args, status, stop)
        started_at = _now()
        # Intent first: the record exists (without a pid) before the process does, so a controller
        # killed between the two finds the job and adopts it instead of starting a second one on
        # the same checkpoint (``_adopt``: the process is recognised by its unique --stop-file).
        rec = JobRecord(
            name=name, version=job.version, entrypoint=job.entrypoint,
            entrypoint_digest=job.entrypoint_digest, args=list(job.args), conf=dict(job.conf),
            checkpoint=job.checkpoint, effective_checkpoint=ckpt,
            strategy=job.strategy, owner=job.owner, argv=argv, pid=None,
            start_ticks=None, boot_id=_boot_id(), started_at=started_at,
            status_file=str(status), stop_file=str(stop), log_file=str(log_file),
        )
        self._write(rec)
        with open(log_file, "ab") as out:
            out.write(f"\n=== pipectl: starting {name} {job.version} at {started_at.isoformat()}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                argv, cwd=self.repo_root, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            )
        self._procs[proc.pid] = proc
        stat = _proc_stat(proc.pid)
        rec.pid, rec.start_ticks = proc.pid, stat[1] if stat else None
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

    def request_stop(self, name: str, timeout: float) -> bool:
        """Non-blocking ``stop``: True once the job no longer runs. The first call asks it to stop
        after its current batch; each later call escalates once ``timeout`` (SIGTERM) and
        ``timeout + term_grace`` (SIGKILL) have passed since that first call."""
        rec = self._read(name)
        if rec is None or not self._alive(rec):
            if rec is not None and self._stopping.pop((name, rec.pid), None) is not None:
                self._mark_stopped(rec)
            return True
        key = (name, rec.pid)
        now = time.monotonic()
        if key not in self._stopping:
            self._stopping[key] = now
            Path(rec.stop_file).touch()
            log.info("spark.job.stop_requested", job=name, pid=rec.pid, timeout=timeout)
        waited = now - self._stopping[key]
        if waited > timeout + self.term_grace:
            log.error("spark.job.sigterm_ignored_sigkill", job=name, pid=rec.pid, waited=waited)
            self._signal(rec, signal.SIGKILL)
        elif waited > timeout:
            log.warning("spark.job.stop_timeout_sigterm", job=name, pid=rec.pid, waited=waited)
            self._signal(rec, signal.SIGTERM)
        if not self._wait_dead(rec, 0.5):
            return False
        self._stopping.pop(key, None)
        self._mark_stopped(rec)
        log.info("spark.job.stopped", job=name, pid=rec.pid, waited=waited)
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

