"""``SparkOperatorRunner``: streaming jobs as kubeflow spark-operator ``SparkApplication`` objects
(``sparkoperator.k8s.io/v1beta2``) on a Kubernetes API server, for ``spec.spark.runner: sparkOperator``.

The object *is* the registry: its name is derived from the job name alone (``object_name``), so a
restarted controller, or a second runner, reads and updates the same object instead of creating
another. ``spark_application`` (pure: job, settings, stage and ``now`` in, a dict out) builds it:
``type: Python``, ``mode: cluster``, ``mainApplicationFile: local://<appRoot>/<entrypoint>``, the
job's args (on its effective checkpoint) as ``arguments``, the job's merged conf as ``sparkConf``,
the environment's image, service account, driver and executor resources, ``restartPolicy:
OnFailure`` as the supervision, labels naming release, stage, job and version, and the job spec
itself in an annotation (what ``list`` reads back as the job's record).

Liveness is what the operator writes in ``status.applicationState.state``: a new object (no state
yet) or one being submitted, running or rerun is alive; ``COMPLETED``, ``FAILED``,
``SUBMISSION_FAILED`` and ``SUCCEEDING`` are not (``ALIVE``). ``JobState.backend_state`` carries the
state itself. ``start`` creates the object, replaces its spec when it exists and is alive (the
operator reruns an application whose spec changed), and deletes and recreates one that has ended
(an unchanged spec would not run again). Stop and kill delete the object (the operator's owner
references take the driver and executor pods with it); ``forget`` deletes an ended one.

Not here: progress (the driver cannot write the controller's status file; ``progress`` is None) and
a graceful stop after the current batch (deleting the object terminates the driver pod).
What a running operator must provide: docs/architecture.md §2.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, Protocol, cast

import structlog

from controller.adapters.kube import api_client
from controller.adapters.spark_records import BACKEND, JobRecord, JobState, check_job_name
from controller.adapters.spark_runner import _now, run_args
from controller.model.endpoints import SparkOperatorSpec
from controller.model.errors import PermanentBackendError, TransientBackendError
from controller.model.identifiers import IdentifierError, check_spark_conf_key
from controller.plan.resources import StreamingJobResource

log = structlog.get_logger("controller.adapters.spark")

GROUP = "sparkoperator.k8s.io"
VERSION = "v1beta2"
PLURAL = "sparkapplications"
KIND = "SparkApplication"
MANAGED_BY = ("app.kubernetes.io/managed-by", "pipectl")
LABEL_RELEASE, LABEL_STAGE = "pipectl.dev/release", "pipectl.dev/stage"
LABEL_JOB, LABEL_VERSION = "pipectl.dev/job", "pipectl.dev/version"
ANN_JOB, ANN_CHECKPOINT = "pipectl.dev/job-spec", "pipectl.dev/checkpoint"
ANN_STARTED = "pipectl.dev/started-at"
ENDED = frozenset({"COMPLETED", "FAILED", "SUBMISSION_FAILED", "SUCCEEDING"})
"""Operator states after which the application does not run again unless recreated; every other
state (none yet, SUBMITTED, RUNNING, PENDING_RERUN, INVALIDATING, FAILING, UNKNOWN) is alive."""
_NAME_MAX = 63  # the operator puts the name in the sparkoperator.k8s.io/app-name label
_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_LABEL_VALUE = re.compile(r"\A([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?\Z")


def _hashed(raw: str, clean: str) -> str:
    return f"{clean[:_NAME_MAX - 9].strip('-.') or 'x'}-{hashlib.sha256(raw.encode()).hexdigest()[:8]}"


def object_name(job_name: str) -> str:
    """The job's SparkApplication name: the job name when it is a DNS label already, else its
    lower-case, '-'-joined form cut to fit, plus 8 hex digits of the name's hash (no two job
    names share an object)."""
    clean = _NOT_DNS.sub("-", job_name.lower()).strip("-")
    if clean == job_name and len(clean) <= _NAME_MAX:
        return clean
    return _hashed(job_name, clean)


def label_value(value: str) -> str:
    """``value`` when it is a valid label value, else a valid one cut from it plus its hash."""
    if _LABEL_VALUE.fullmatch(value):
        return value
    return _hashed(value, re.sub(r"[^A-Za-z0-9._-]+", "-", value).strip("-._"))


def job_state(obj: dict[str, Any]) -> str:
    """``status.applicationState.state`` as the operator wrote it; "" before it has seen the object."""
    status = obj.get("status") or {}
    return str((status.get("applicationState") or {}).get("state") or "")


def is_alive(obj: dict[str, Any]) -> bool:
    return not (obj.get("metadata") or {}).get("deletionTimestamp") and job_state(obj) not in ENDED


def _main_file(settings: SparkOperatorSpec, entrypoint: str) -> str:
    rel = PurePosixPath(entrypoint)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise PermanentBackendError(BACKEND, f"entrypoint {entrypoint!r} is not a path inside the repository")
    return f"local://{PurePosixPath(settings.app_root) / rel}"


def spark_application(job: StreamingJobResource, settings: SparkOperatorSpec, stage: str,
                      *, now: datetime) -> dict[str, Any]:
    """The ``SparkApplication`` that runs ``job`` at ``stage`` (pure; ``now`` is its start time)."""
    name = check_job_name(job.name)
    args, ckpt = run_args(job)
    for key in job.conf:
        try:
            check_spark_conf_key(key)
        except IdentifierError as e:
            raise PermanentBackendError(BACKEND, str(e)) from e
    labels = {MANAGED_BY[0]: MANAGED_BY[1], LABEL_STAGE: label_value(stage), LABEL_JOB: label_value(name),
              LABEL_VERSION: label_value(job.version)}
    if job.owner is not None:
        labels[LABEL_RELEASE] = label_value(job.owner.release)
    retries = settings.on_failure_retries
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "name": object_name(name),
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": {
                ANN_JOB: job.model_dump_json(exclude={"running"}),
                ANN_CHECKPOINT: ckpt,
                ANN_STARTED: now.isoformat(),
            },
        },
        "spec": {
            "type": "Python",
            "pythonVersion": "3",
            "mode": "cluster",
            "image": settings.image,
            "sparkVersion": settings.spark_version,
            "mainApplicationFile": _main_file(settings, job.entrypoint),
            "arguments": args,
            "sparkConf": dict(job.conf),
            "restartPolicy": {
                "type": "OnFailure",
                "onFailureRetries": retries,
                "onFailureRetryInterval": 10,
                "onSubmissionFailureRetries": retries,
                "onSubmissionFailureRetryInterval": 20,
            },
            "driver": {"cores": settings.driver.cores, "memory": settings.driver.memory,
                       "serviceAccount": settings.service_account, "labels": dict(labels)},
            "executor": {"instances": settings.executor.instances, "cores": settings.executor.cores,
                         "memory": settings.executor.memory, "labels": dict(labels)},
        },
    }


def job_record(obj: dict[str, Any]) -> JobRecord:
    """The registry record a SparkApplication built by ``spark_application`` stands for."""
    meta = obj.get("metadata") or {}
    ann = meta.get("annotations") or {}
    where = f"{meta.get('namespace')}/{meta.get('name')}"
    try:
        job = StreamingJobResource.model_validate_json(ann[ANN_JOB])
        started = datetime.fromisoformat(ann[ANN_STARTED])
    except (KeyError, ValueError) as e:
        raise PermanentBackendError(BACKEND, f"SparkApplication {where}: unreadable annotation {e}") from e
    spec = obj.get("spec") or {}
    return JobRecord(
        name=job.name, version=job.version, entrypoint=job.entrypoint,
        entrypoint_digest=job.entrypoint_digest, args=list(job.args), conf=dict(job.conf),
        checkpoint=job.checkpoint, effective_checkpoint=str(ann.get(ANN_CHECKPOINT, job.checkpoint)),
        strategy=job.strategy, owner=job.owner,
        argv=[str(spec.get("mainApplicationFile", "")), *map(str, spec.get("arguments") or [])],
        started_at=started, submission_id=f"SparkApplication {where}",
        status_file="", stop_file="", log_file="",
    )


class SparkApplicationApi(Protocol):
    """What the runner needs from the API server, in one namespace."""

    def get(self, name: str) -> dict[str, Any] | None: ...

    def list(self, label_selector: str) -> list[dict[str, Any]]: ...

    def create(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def replace(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replace the object (``body`` carries the resourceVersion read: a conflict fails)."""
        ...

    def delete(self, name: str) -> bool:
        """Delete it; False when there was none."""
        ...


class KubeSparkApplications:
    """``SparkApplicationApi`` through the ``kubernetes`` SDK (imported lazily). Create and replace
    use ``fieldValidation=Strict``: a field the CRD does not define is refused, not dropped."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        from kubernetes import client

        self.namespace = namespace
        self._custom = client.CustomObjectsApi(api_client)

    @classmethod
    def connect(cls, namespace: str) -> KubeSparkApplications:
        """Credentials as ``KubeApi.connect``: ``KUBECONFIG`` when present, else the service account."""
        return cls(api_client(), namespace)

    def _call(self, what: str, fn: Any, *args: Any, **kw: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(GROUP, VERSION, self.namespace, PLURAL, *args, **kw)
        except ApiException as e:
            if e.status == 404 and what in ("get", "delete"):
                return None
            msg = f"{what} SparkApplication in {self.namespace}: HTTP {e.status} {str(e.body)[:400]}"
            if e.status in (409, 429) or (e.status or 0) >= 500:
                raise TransientBackendError(BACKEND, msg) from e
            raise PermanentBackendError(BACKEND, msg) from e
        except (HTTPError, OSError) as e:
            raise TransientBackendError(BACKEND, f"{what} SparkApplication in {self.namespace}: {e}") from e

    def get(self, name: str) -> dict[str, Any] | None:
        return cast(dict[str, Any] | None, self._call("get", self._custom.get_namespaced_custom_object, name))

    def list(self, label_selector: str) -> list[dict[str, Any]]:
        out = self._call("list", self._custom.list_namespaced_custom_object, label_selector=label_selector)
        return list(cast(dict[str, Any], out).get("items") or [])

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return cast(dict[str, Any], self._call(
            "create", self._custom.create_namespaced_custom_object, body, field_validation="Strict"))

    def replace(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return cast(dict[str, Any], self._call(
            "replace", self._custom.replace_namespaced_custom_object, name, body, field_validation="Strict"))

    def delete(self, name: str) -> bool:
        return self._call("delete", self._custom.delete_namespaced_custom_object, name) is not None


class SparkOperatorRunner:
    """The ``JobRunner`` whose jobs are SparkApplication objects in one namespace (module docstring)."""

    def __init__(self, api: SparkApplicationApi, settings: SparkOperatorSpec, stage: str,
                 *, poll: float = 1.0) -> None:
        self.api, self.settings, self.stage, self.poll = api, settings, stage, poll

    def _get(self, name: str) -> dict[str, Any] | None:
        return self.api.get(object_name(check_job_name(name)))

    def _state(self, obj: dict[str, Any]) -> JobState:
        return JobState(record=job_record(obj), alive=is_alive(obj), backend_state=job_state(obj))

    def start(self, job: StreamingJobResource) -> JobState:
        body = spark_application(job, self.settings, self.stage, now=_now())
        name = body["metadata"]["name"]
        old = self.api.get(name)
        if old is not None and not is_alive(old):
            # An ended application does not run again for an unchanged spec: a new object does.
            self.api.delete(name)
            old = None
        if old is None:
            obj = self.api.create(body)
            log.info("spark.job.started", job=job.name, version=job.version, application=name,
                     namespace=self.settings.namespace)
        else:
            body["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            obj = self.api.replace(name, body)
            log.info("spark.job.updated", job=job.name, version=job.version, application=name,
                     namespace=self.settings.namespace, state=job_state(old))
        return self._state(obj)

    def _delete(self, name: str, why: str) -> bool:
        obj = self._get(name)
        if obj is None or not is_alive(obj):
            return False
        log.info(why, job=name, application=obj["metadata"]["name"], state=job_state(obj))
        self.api.delete(obj["metadata"]["name"])
        return True

    def stop(self, name: str, timeout: float) -> bool:
        """Delete the object and wait (CLI verbs only) until the server no longer has it."""
        if not self._delete(name, "spark.job.stop_requested"):
            return False
        deadline = time.monotonic() + timeout
        while self._get(name) is not None:
            if time.monotonic() >= deadline:
                raise TransientBackendError(BACKEND, f"job {name}: SparkApplication still being deleted")
            time.sleep(self.poll)
        return True

    def request_stop(self, name: str, timeout: float) -> bool:
        """Delete the object; True once it no longer runs (deleted, or being deleted)."""
        self._delete(name, "spark.job.stop_requested")
        obj = self._get(name)
        return obj is None or not is_alive(obj)

    def kill(self, name: str) -> bool:
        return self._delete(name, "spark.job.kill")

    def list(self, names: Sequence[str] | None = None) -> dict[str, JobState]:
        if names is None:
            objs = self.api.list(f"{MANAGED_BY[0]}={MANAGED_BY[1]}")
        else:
            objs = [o for o in (self._get(n) for n in names) if o is not None]
        states = [self._state(o) for o in objs]
        return {s.record.name: s for s in states if names is None or s.record.name in names}

    def forget(self, name: str) -> bool:
        obj = self._get(name)
        if obj is None:
            return False
        if is_alive(obj):
            raise PermanentBackendError(BACKEND, f"job {name} is running; stop it before forgetting it")
        self.api.delete(obj["metadata"]["name"])
        log.info("spark.job.forgotten", job=name, checkpoint=job_record(obj).effective_checkpoint)
        return True

