"""``StandaloneRunner``: streaming jobs as cluster-mode drivers on a Spark standalone master,
tracked by submission id, with the same registry and lifecycle files as ``LocalRunner``.

``spark-submit`` refuses PySpark in cluster mode on standalone ("Cluster deploy mode is not
currently supported for python applications on standalone clusters"), so drivers are created
through the master's REST submission server (``POST /v1/submissions/create``) with
``org.apache.spark.deploy.PythonRunner`` as main class and ``spark.driver.supervise=true``: the
worker relaunches a driver that dies, with the same arguments, so it resumes from its checkpoint.

Intent first: the registry record is written (without a submission id) before the create call. A
record found that way later means the controller died around the call; ``_adopt`` then looks at
the master's active drivers (its JSON UI) for one created at or after the record's start that no
other record claims: one is adopted, none means the create never happened (the next pass starts
the job), more than one is refused for a person to look at. So a restart never submits twice.

The job's status and stop files stay under the controller's ``state_dir``: the drivers must see
that path (one host, or a shared file system). Drivers get only the variables they need
(``_driver_env``: the read-only schema registry token among them when the controller hands its
registry to jobs, ``controller.wiring.Wiring.job_env``), never the controller's other secrets or state
settings.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import datetime
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any, Protocol

import structlog

from controller.adapters.spark_records import BACKEND, JobRecord, JobState, check_job_name
from controller.adapters.spark_runner import LocalRunner, _boot_id, _now
from controller.model.endpoints import REGISTRY_TOKEN_ENV
from controller.model.errors import PermanentBackendError, TransientBackendError
from controller.model.identifiers import IdentifierError, check_spark_conf_key
from controller.plan.resources import StreamingJobResource

log = structlog.get_logger("controller.adapters.spark")

ACTIVE_STATES = frozenset({"SUBMITTED", "RUNNING", "RELAUNCHING"})
PYTHON_RUNNER = "org.apache.spark.deploy.PythonRunner"
# spark-submit adds these to every JVM it starts on Java 17 (launcher JavaModuleOptions); a driver
# created over REST is started by the worker without them and fails in StorageUtils.
JAVA_MODULE_OPTIONS = " ".join(
    ["-XX:+IgnoreUnrecognizedVMOptions", "-Djdk.reflect.useDirectMethodHandle=false"]
    + [
        f"--add-opens=java.base/{p}=ALL-UNNAMED"
        for p in (
            "java.lang", "java.lang.invoke", "java.lang.reflect", "java.io", "java.net", "java.nio",
            "java.util", "java.util.concurrent", "java.util.concurrent.atomic", "jdk.internal.ref",
            "sun.nio.ch", "sun.nio.cs", "sun.security.action", "sun.util.calendar",
        )
    ]
)
# From the controller's environment, only these reach a driver (the worker provides the rest).
_DRIVER_ENV = ("PYSPARK_PYTHON", "PYTHONPATH", "LANG", "LC_ALL", "TZ", REGISTRY_TOKEN_ENV)
# spark-defaults.conf keys that describe the controller's host, not the worker's.
_HOST_LOCAL_CONF = frozenset({"spark.master", "spark.driver.host", "spark.driver.bindAddress",
                              "spark.submit.deployMode"})


class MasterApi(Protocol):
    """What the runner needs from a standalone master."""

    def create(self, request: dict[str, Any]) -> str:
        """Submit a driver; its submission id."""
        ...

    def kill(self, submission_id: str) -> None: ...

    def active_drivers(self) -> list[dict[str, Any]]:
        """The master's active drivers (``id``, ``state``, ``starttime`` ms, ``mainclass``)."""
        ...


class RestMasterApi:
    """``MasterApi`` over the REST submission server and the master's JSON UI."""

    def __init__(self, rest_url: str, ui_url: str, timeout: float = 10.0) -> None:
        for url in (rest_url, ui_url):
            if not url.startswith(("http://", "https://")):
                raise PermanentBackendError(BACKEND, f"standalone master URL {url!r} is not http(s)")
        self.rest_url, self.ui_url, self.timeout = rest_url.rstrip("/"), ui_url.rstrip("/"), timeout

    def _call(self, url: str, body: dict[str, Any] | None = None, method: str = "GET") -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(  # noqa: S310 - http(s) checked in __init__
            url, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            raise PermanentBackendError(BACKEND, f"{method} {url}: HTTP {e.code} {e.read()[:300]!r}") from e
        except (OSError, ValueError) as e:
            raise TransientBackendError(BACKEND, f"{method} {url}: {e}") from e

    def create(self, request: dict[str, Any]) -> str:
        out = self._call(f"{self.rest_url}/v1/submissions/create", request, "POST")
        if not isinstance(out, dict) or not out.get("success") or not out.get("submissionId"):
            raise PermanentBackendError(BACKEND, f"driver not created: {out}")
        return str(out["submissionId"])

    def kill(self, submission_id: str) -> None:
        self._call(f"{self.rest_url}/v1/submissions/kill/{submission_id}", {}, "POST")

    def active_drivers(self) -> list[dict[str, Any]]:
        out = self._call(f"{self.ui_url}/json/")
        drivers = out.get("activedrivers", []) if isinstance(out, dict) else []
        return [d for d in drivers if isinstance(d, dict)]


def read_spark_defaults(conf_dir: str | None) -> dict[str, str]:
    """``spark-defaults.conf`` as spark-submit reads it (what a REST submission would miss)."""
    if not conf_dir:
        return {}
    try:
        text = (Path(conf_dir) / "spark-defaults.conf").read_text()
    except FileNotFoundError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out[key] = value.strip()
    return out


def pick_orphan(drivers: list[dict[str, Any]], claimed: set[str], since: datetime) -> list[str]:
    """Active Python drivers created at or after ``since`` that no registry record claims."""
    since_ms = since.timestamp() * 1000 - 1000  # the master's clock in ms; one second of slack
    return sorted(
        str(d["id"]) for d in drivers
        if d.get("mainclass") == PYTHON_RUNNER and str(d.get("id")) not in claimed
        and d.get("state") in ACTIVE_STATES and float(d.get("starttime", 0)) >= since_ms
    )


class StandaloneRunner(LocalRunner):
    """Runs jobs as supervised cluster-mode drivers on a standalone master (``spark://``)."""

    def __init__(
        self,
        state_dir: Path,
        repo_root: Path,
        env: dict[str, str],
        master: str,
        api: MasterApi,
        *,
        driver_memory: str = "512m",
        executor_memory: str = "512m",
        term_grace: float = 15.0,
    ) -> None:
        if not master.startswith("spark://"):
            raise PermanentBackendError(BACKEND, f"master {master!r}: StandaloneRunner needs spark://host:port")
        # LocalRunner.__init__ refuses cluster mode: set up what the inherited registry helpers use.
        self.state_dir = Path(state_dir).resolve()
        self.jobs_dir = self.state_dir / "jobs"
        self.repo_root = Path(repo_root).resolve()
        self.master, self.deploy_mode = master, "cluster"
        self.driver_memory, self.executor_memory = driver_memory, executor_memory
        self.term_grace = term_grace
        self.env = self._process_env(env)
        self.spark_home = Path(self.env["SPARK_HOME"])
        self.api = api
        self._stopping: dict[tuple[str, int | None], float] = {}
        self._active: list[dict[str, Any]] | None = None  # one master read per list()

    # --- drivers -------------------------------------------------------------------------------

    def _drivers(self) -> list[dict[str, Any]]:
        return self._active if self._active is not None else self.api.active_drivers()

    def _alive(self, rec: JobRecord) -> bool:
        if rec.submission_id is None and rec.stopped_at is None:
            self._adopt(rec)
        if rec.submission_id is None or rec.stopped_at is not None:
            return False
        active = (d for d in self._drivers() if d.get("state") in ACTIVE_STATES)
        return any(d.get("id") == rec.submission_id for d in active)

    def _adopt(self, rec: JobRecord) -> None:
        claimed = {r.submission_id for r in self._records() if r.submission_id}
        found = pick_orphan(self._drivers(), claimed, rec.started_at)
        if len(found) > 1:
            raise PermanentBackendError(
                BACKEND, f"job {rec.name}: its start was interrupted and the master has {len(found)} "
                f"unclaimed drivers since then ({', '.join(found)}); kill the extra ones by hand",
            )
        if found:
            rec.submission_id = found[0]
            log.warning("spark.job.adopted", job=rec.name, submission_id=found[0])
        else:
            rec.stopped_at = _now()  # nothing was created: the next pass starts it
        self._write(rec)

    def _records(self) -> list[JobRecord]:
        paths = sorted(self.jobs_dir.glob("*.json")) if self.jobs_dir.exists() else []
        return [r for r in (self._read(p.stem) for p in paths) if r is not None]

    def _driver_env(self) -> dict[str, str]:
        return {k: self.env[k] for k in _DRIVER_ENV if k in self.env}

    def _properties(self, job: StreamingJobResource) -> dict[str, str]:
        props = {k: v for k, v in read_spark_defaults(self.env.get("SPARK_CONF_DIR")).items()
                 if k not in _HOST_LOCAL_CONF}
        if "spark.driver.extraClassPath" in props:  # executors run in their own JVMs here
            props.setdefault("spark.executor.extraClassPath", props["spark.driver.extraClassPath"])
        props.update({"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
                      "spark.driver.memory": self.driver_memory,
                      "spark.executor.memory": self.executor_memory})
        for key, value in job.conf.items():
            try:
                check_spark_conf_key(key)
            except IdentifierError as e:
                raise PermanentBackendError(BACKEND, str(e)) from e
            props[key] = value
        java_opts = f"{JAVA_MODULE_OPTIONS} {props.get('spark.driver.extraJavaOptions', '')}".strip()
        props.update({"spark.master": self.master, "spark.submit.deployMode": "cluster",
                      "spark.driver.supervise": "true", "spark.app.name": job.name,
                      "spark.driver.extraJavaOptions": java_opts})
        return props

    def _request(self, job: StreamingJobResource, entrypoint: Path, args: list[str],
                 status: Path, stop: Path) -> dict[str, Any]:
        return {
            "action": "CreateSubmissionRequest",
            "appResource": entrypoint.as_uri(),
            "mainClass": PYTHON_RUNNER,
            # PythonRunner's own arguments first: the script and its --py-files (none).
            "appArgs": [str(entrypoint), "", *args, "--status-file", str(status), "--stop-file", str(stop)],
            "clientSparkVersion": dist_version("pyspark"),
            "environmentVariables": self._driver_env(),
            "sparkProperties": self._properties(job),
        }

    # --- JobRunner -----------------------------------------------------------------------------

    def start(self, job: StreamingJobResource) -> JobState:
        name = check_job_name(job.name)
        old = self._read(name)
        if old is not None and self._alive(old):
            raise PermanentBackendError(
                BACKEND, f"job {name} is already running (driver {old.submission_id})"
            )
        entrypoint, args, ckpt, (status, stop, log_file) = self._prepare_run(job)
        request = self._request(job, entrypoint, args, status, stop)
        rec = JobRecord(
            name=name, version=job.version, entrypoint=job.entrypoint,
            entrypoint_digest=job.entrypoint_digest, args=list(job.args), conf=dict(job.conf),
            checkpoint=job.checkpoint, effective_checkpoint=ckpt, strategy=job.strategy, owner=job.owner,
            argv=[request["mainClass"], *request["appArgs"]], boot_id=_boot_id(), started_at=_now(),
            status_file=str(status), stop_file=str(stop), log_file=str(log_file),
        )
        self._write(rec)  # intent first (module docstring)
        rec.submission_id = self.api.create(request)
        self._write(rec)
        log.info("spark.job.started", job=name, version=job.version, submission_id=rec.submission_id,
                 master=self.master, checkpoint=ckpt)
        return JobState(record=rec, alive=True)

    def stop(self, name: str, timeout: float) -> bool:
        rec = self._read(name)
        if rec is None or not self._alive(rec):
            return False
        Path(rec.stop_file).touch()
        log.info("spark.job.stop_requested", job=name, submission_id=rec.submission_id, timeout=timeout)
        if not self._wait_dead(rec, timeout, poll=1.0):
            log.warning("spark.job.stop_timeout_kill", job=name, submission_id=rec.submission_id)
            self._kill_driver(rec)
        self._mark_stopped(rec)
        return True

    def request_stop(self, name: str, timeout: float) -> bool:
        """Non-blocking ``stop``: the stop file first; once ``timeout`` has passed since the first
        call, the master's kill (the driver gets no SIGTERM stage of its own)."""
        rec = self._read(name)
        key = (name, None)
        if rec is None or not self._alive(rec):
            if rec is not None and self._stopping.pop(key, None) is not None:
                self._mark_stopped(rec)
            return True
        now = time.monotonic()
        if key not in self._stopping:
            self._stopping[key] = now
            Path(rec.stop_file).touch()
            log.info("spark.job.stop_requested", job=name, submission_id=rec.submission_id, timeout=timeout)
        elif now - self._stopping[key] > timeout and rec.submission_id is not None:
            log.warning("spark.job.stop_timeout_kill", job=name, submission_id=rec.submission_id)
            self.api.kill(rec.submission_id)
        return False

    def _kill_driver(self, rec: JobRecord) -> None:
        if rec.submission_id is None:
            return
        self.api.kill(rec.submission_id)
        if not self._wait_dead(rec, self.term_grace, poll=1.0):
            raise PermanentBackendError(
                BACKEND, f"job {rec.name}: driver {rec.submission_id} survived its kill"
            )

    def kill(self, name: str) -> bool:
        rec = self._read(name)
        if rec is None or not self._alive(rec):
            return False
        log.warning("spark.job.kill", job=name, submission_id=rec.submission_id)
        self._kill_driver(rec)
        self._mark_stopped(rec)
        return True

    def list(self, names: Sequence[str] | None = None) -> dict[str, JobState]:
        # one master round trip for the whole listing: _alive reads the drivers from it
        self._active = self.api.active_drivers()
        try:
            return super().list(names)
        finally:
            self._active = None


def standalone_api(master: str, env: Mapping[str, str] | None = None) -> RestMasterApi:
    """The REST and UI URLs of a ``spark://host:port`` master: PIPECTL_SPARK_REST_URL and
    PIPECTL_SPARK_MASTER_UI_URL, else the host with Spark's default ports 6066 and 8080."""
    env = os.environ if env is None else env
    host = master.removeprefix("spark://").split(",")[0].rsplit(":", 1)[0]
    return RestMasterApi(
        env.get("PIPECTL_SPARK_REST_URL") or f"http://{host}:6066",
        env.get("PIPECTL_SPARK_MASTER_UI_URL") or f"http://{host}:8080",
    )
