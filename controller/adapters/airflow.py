"""Airflow adapter: observe and apply DAGs through Airflow 2.x's REST API (apache-airflow-client).

What pipectl deploys for a DAG ``<id>__<stage>``:

* ``<id>__<stage>.py`` — the DAG file from the repository, **byte for byte** (never rewritten, so
  the deployed file's sha256 is directly the desired ``source_digest``);
* ``<id>__<stage>.pipectl.json`` — a small metadata sidecar written by pipectl, e.g.
  ``{"dag_id": "host_metrics_daily__dev", "release": "host-metrics", "version": "1.0.0",
  "tags": ["pipectl", "release:host-metrics", "version:1.0.0"]}``.

The DAG file takes its dag_id from its file name and its tags from the sidecar, so the version tag
Airflow reports is the version pipectl deployed (Airflow ignores non-``.py`` files)::

    import json
    from pathlib import Path

    _FILE = Path(__file__)
    _META = _FILE.with_suffix(".pipectl.json")
    PIPECTL = json.loads(_META.read_text()) if _META.exists() else {"tags": []}

    with DAG(dag_id=_FILE.stem, tags=PIPECTL["tags"], ...):
        ...

When the manifest sets ``dags[].schedule``, the sidecar also carries ``"schedule"`` (null: triggered
runs only) and the DAG file passes ``PIPECTL.get("schedule")`` to ``DAG(schedule=...)``; the deploy
is picked up only when Airflow reports that schedule, and a file that keeps its own fails permanently
at the pickup timeout, naming both schedules.

(A generated header prepended to the source was the alternative; it changes the file's digest and
breaks any DAG that starts with ``from __future__ import ...``.) The ``.py`` is written before the
sidecar, so once Airflow reports the new ``version:`` tag it has parsed the new code too.

Observe is one ``get_dags`` call per pass (dag_id pattern, paged) plus the deployer's local file
digest. Apply of a create/update deploys what differs, waits (bounded) until the API reports the
DAG active at the desired version — failing with the Airflow import error when the file does not
import — then sets the paused state. Delete pauses, removes the files and deletes the DAG record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePath
from typing import Any

import structlog
import urllib3
from airflow_client.client import ApiClient, Configuration
from airflow_client.client.api.dag_api import DAGApi
from airflow_client.client.api.dag_run_api import DAGRunApi
from airflow_client.client.api.import_error_api import ImportErrorApi
from airflow_client.client.exceptions import ApiException, OpenApiException
from airflow_client.client.model.dag import DAG
from airflow_client.client.model.dag_run import DAGRun

from controller.adapters._retry import retrying
from controller.adapters.airflow_files import (
    META_SUFFIX as META_SUFFIX,
)
from controller.adapters.airflow_files import (
    PIPECTL_TAG as PIPECTL_TAG,
)
from controller.adapters.airflow_files import (
    DagDeployer as DagDeployer,
)
from controller.adapters.airflow_files import (
    LocalFolderDeployer as LocalFolderDeployer,
)
from controller.adapters.airflow_files import (
    _common_prefix as _common_prefix,
)
from controller.adapters.airflow_files import (
    dag_tags as dag_tags,
)
from controller.adapters.airflow_files import (
    id_pattern as id_pattern,
)
from controller.adapters.airflow_files import (
    meta_file_name as meta_file_name,
)
from controller.adapters.airflow_files import (
    render_meta as render_meta,
)
from controller.adapters.airflow_files import (
    source_tag as source_tag,
)
from controller.adapters.airflow_files import (
    tag_value as tag_value,
)
from controller.adapters.airflow_files import (
    unparsed_dags as unparsed_dags,
)
from controller.adapters.base import ApplyResult, CallStats
from controller.model.errors import ConflictError, NotReadyYet, PermanentBackendError, TransientBackendError
from controller.model.reasons import Reason
from controller.plan.actions import Action, Op
from controller.plan.desired import digest
from controller.plan.resources import DagResource, Owner, Resource, ResourceKind

log = structlog.get_logger(__name__)

BACKEND = "airflow"
_PAGE = 100


# --- deployers ---------------------------------------------------------------------------------


class AirflowAdapter:
    kinds = frozenset({ResourceKind.DAG})

    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        deployer: DagDeployer,
        *,
        pickup_timeout: float = 60.0,
        drain_timeout: float = 30.0,
        poll_interval: float = 1.0,
        request_timeout: tuple[float, float] = (5.0, 30.0),
    ):
        host = url.rstrip("/")
        if not host.endswith("/api/v1"):
            host += "/api/v1"
        conf = Configuration(host=host, username=username, password=password)
        conf.retries = 0  # retries are ours (tenacity), not urllib3's silent ones
        self._client = ApiClient(conf)
        self._dags = DAGApi(self._client)
        self._runs = DAGRunApi(self._client)
        self._import_errors = ImportErrorApi(self._client)
        self.deployer = deployer
        self.pickup_timeout = pickup_timeout
        self.drain_timeout = drain_timeout
        self.poll_interval = poll_interval
        self._timeout = request_timeout
        self.stats = CallStats()
        self.url = host
        self.requeue_waits = False
        """True in the controller: a wait (drain, pickup) raises ``NotReadyYet`` after one look
        instead of sleeping, so the worker moves on and the pass is requeued."""
        self._pickups: dict[tuple[str, str, str], _PickupWait] = {}

    # --- observe -------------------------------------------------------------------------------

    def observe(self, kind: ResourceKind, names: Sequence[str]) -> dict[str, Resource]:
        if kind is not ResourceKind.DAG:
            raise ValueError(f"AirflowAdapter observes DAGs, not {kind}")
        wanted = set(names)
        if not wanted:
            return {}
        dags = self._list_dags(dag_id_pattern=id_pattern(sorted(wanted)))
        out: dict[str, Resource] = {d.dag_id: self._live(d) for d in dags if d.dag_id in wanted}
        return {**unparsed_dags(self.deployer, out, sorted(wanted)), **out}

    def snapshot_scope(self, kind: ResourceKind, name: str) -> str | None:
        """Every DAG is read in one scope (``engine.snapshot``)."""
        return "dags" if kind is ResourceKind.DAG else None

    def observe_scope(self, scope: str) -> dict[tuple[ResourceKind, str], Resource]:
        """Every active DAG, in one paged list (one call per 100 DAGs)."""
        if scope != "dags":
            raise ValueError(f"no Airflow scope {scope!r}")
        reported = {str(d.dag_id): self._live(d) for d in self._list_dags()}
        live = {**unparsed_dags(self.deployer, reported), **reported}
        return {(ResourceKind.DAG, name): dag for name, dag in live.items()}

    def observe_owned(self, release: str) -> dict[str, DagResource]:
        """Every active DAG tagged ``release:<release>`` (prune candidates), in one paged call."""
        return {d.dag_id: self._live(d) for d in self._list_dags(tags=[f"release:{release}"])}

    def _list_dags(self, **filters: Any) -> list[Any]:
        out: list[Any] = []
        while True:
            page = self._call(
                "get_dags", self._dags.get_dags, limit=_PAGE, offset=len(out), only_active=True, **filters
            )
            batch = list(page.dags or [])
            out.extend(batch)
            if not batch or len(out) >= int(page.total_entries or 0):
                return out

    def _live(self, dag: Any) -> DagResource:
        tags = _tags(dag)
        release, version = tag_value(tags, "release"), tag_value(tags, "version")
        file_name = PurePath(str(dag.fileloc)).name
        return DagResource(
            name=str(dag.dag_id),
            owner=Owner(release=release, version=version or "") if release else None,
            file_name=file_name,
            source_digest=self.deployer.read_digest(file_name) or "",
            version=version or "",
            paused=bool(dag.is_paused),
            schedule=_schedule(dag),
        )

    # --- apply ---------------------------------------------------------------------------------

    def apply(self, action: Action) -> ApplyResult:
        if action.kind is not ResourceKind.DAG:
            raise PermanentBackendError(BACKEND, f"cannot apply {action.kind} actions")
        if action.op is Op.REFUSE or action.pending:  # a refusal, or awaiting approval
            raise PermanentBackendError(BACKEND, f"refused action cannot be applied: {action.describe()}")
        if not isinstance(action.desired, DagResource):
            raise PermanentBackendError(BACKEND, f"{action.id}: action carries no DAG resource")
        if action.op in (Op.CREATE, Op.UPDATE):
            return self._converge(action.id, action.desired)
        if action.op is Op.DELETE:
            return self._delete(action.id, action.desired)
        raise PermanentBackendError(BACKEND, f"{action.id}: unsupported operation {action.op}")

    def _converge(self, action_id: str, d: DagResource) -> ApplyResult:
        if d.source is None:
            raise PermanentBackendError(BACKEND, f"{action_id}: desired DAG has no source to deploy")
        if digest(d.source.encode("utf-8")) != d.source_digest:
            raise PermanentBackendError(BACKEND, f"{action_id}: source does not match source_digest")
        meta_name, meta = meta_file_name(d.file_name), render_meta(d, getattr(self.deployer, "meta", None))
        write_py = self.deployer.read_digest(d.file_name) != d.source_digest
        write_meta = self.deployer.read_digest(meta_name) != digest(meta.encode("utf-8"))

        before = self._get_dag(d.name)
        if write_py and before is not None:
            self._await_drain(d, tag_value(_tags(before), "version"))
        notes: list[str] = []
        if write_py or write_meta or not _ready(before, d, None):
            err_before = self._import_error(d.file_name)
            # The .py first: a parse that sees the new sidecar also sees the new code.
            if write_py:
                self.deployer.deploy(d.file_name, d.source)
                notes.append(f"deployed {d.file_name}")
            if write_meta:
                self.deployer.deploy(meta_name, meta)
                notes.append(f"wrote {meta_name}")
            if (write_py or write_meta) and before is not None and before.file_token:
                self._request_reparse(str(before.file_token))
            baseline = before.last_parsed_time if (write_py or write_meta) and before is not None else None
            if write_py or write_meta:
                # a new deployment waits afresh: an earlier wait for the same (DAG, source, version)
                # may never have been closed here (a later pass saw the DAG in place and planned no
                # action), and a rollback deploys exactly such a version again
                self._pickups.pop((d.name, d.source_digest, d.version), None)
            started = time.monotonic()
            dag = self._await_pickup(d, baseline, err_before)
            notes.append(f"Airflow reports version {d.version} after {time.monotonic() - started:.1f}s")
        else:
            dag = before
        repause = bool(dag.is_paused) != d.paused
        if repause:
            self._patch_paused(d.name, d.paused)
            notes.append("paused" if d.paused else "unpaused")
        changed = write_py or write_meta or repause
        log.info("airflow.dag.applied", dag_id=d.name, version=d.version, changed=changed, steps=notes)
        return ApplyResult(action_id=action_id, changed=changed, message="; ".join(notes) or "converged")

    def _await_drain(self, d: DagResource, live_version: str | None) -> None:
        """Refuse to replace a DAG's code while runs of the live version are in flight.

        Airflow re-reads the DAG file for every task, so a run straddling the swap would run its
        remaining tasks on the new code. The old version keeps running (it is not paused: the
        scheduler does not advance the runs of a paused DAG) until its runs drain; until then the
        action is not applied and the next pass looks again.
        """
        deadline = time.monotonic() + self.drain_timeout
        while True:
            active = self.list_runs(d.name, states=["queued", "running"])
            if not active:
                return
            if self.requeue_waits or time.monotonic() >= deadline:
                ids = ", ".join(str(r["run_id"]) for r in active[:3]) + (" …" if len(active) > 3 else "")
                msg = (
                    f"DAG {d.name}: waiting for {len(active)} in-flight run(s) of version "
                    f"{live_version or '(untagged)'} to drain before deploying {d.version} ({ids})"
                )
                if self.requeue_waits:
                    raise NotReadyYet(BACKEND, msg, Reason.RUNS_IN_FLIGHT, retry_after=5.0)
                raise TransientBackendError(BACKEND, msg, reason=Reason.RUNS_IN_FLIGHT)
            time.sleep(self.poll_interval)

    def _await_pickup(self, d: DagResource, baseline: datetime | None, err_before: Any) -> Any:
        # A wait spans passes when waits requeue: the first look's reference points are kept.
        key = (d.name, d.source_digest, d.version)
        w = self._pickups.get(key)
        if w is None:
            w = self._pickups[key] = _PickupWait(time.monotonic() + self.pickup_timeout, baseline, err_before)
        try:
            while True:
                dag = self._get_dag(d.name)
                if _ready(dag, d, w.baseline):
                    self._pickups.pop(key, None)
                    return dag
                self._check_import_error(d, w)
                if time.monotonic() >= w.deadline:
                    self._pickups.pop(key, None)
                    if _ready(dag, d, w.baseline, check_schedule=False):
                        raise PermanentBackendError(BACKEND, _schedule_ignored(d, dag))
                    raise TransientBackendError(BACKEND, _not_picked_up(d, dag, self.pickup_timeout))
                if self.requeue_waits:
                    msg = f"DAG {d.name}: waiting for Airflow to report version {d.version}"
                    raise NotReadyYet(BACKEND, msg, Reason.AWAITING_BACKEND, 2 * self.poll_interval)
                time.sleep(self.poll_interval)
        except PermanentBackendError:
            self._pickups.pop(key, None)
            raise

    def _check_import_error(self, d: DagResource, w: _PickupWait) -> None:
        # A stale import error (from the file we are replacing) can be re-recorded by a parse that
        # started before our write; when one was present, only a second fresh failure counts.
        needed = 2 if w.err_before is not None else 1
        err = self._import_error(d.file_name)
        if err is None or (w.err_before is not None and err.timestamp == w.err_before.timestamp):
            return
        w.fresh.add(str(err.timestamp))
        if len(w.fresh) >= needed:
            trace = str(err.stack_trace or "").strip()
            log.warning("airflow.dag.import_error", dag_id=d.name, file=d.file_name, trace=trace)
            last = trace.splitlines()[-1] if trace else "(no stack trace)"
            raise PermanentBackendError(BACKEND, f"DAG file {d.file_name} fails to import in Airflow: {last}")

    def _delete(self, action_id: str, live: DagResource) -> ApplyResult:
        expected = f"{live.name}.py"
        if live.file_name != expected:
            raise PermanentBackendError(
                BACKEND, f"{action_id}: DAG {live.name} is defined in {live.file_name}, not {expected}"
            )
        notes: list[str] = []
        dag = self._get_dag(live.name, only_active=False)
        if dag is not None and not dag.is_paused:
            self._patch_paused(live.name, True)
            notes.append("paused")
        for name in (live.file_name, meta_file_name(live.file_name)):
            if self.deployer.read_digest(name) is not None:
                self.deployer.remove(name)
                notes.append(f"removed {name}")
        if dag is not None:
            try:
                self._call("delete_dag", self._dags.delete_dag, live.name, missing_ok=True)
            except ConflictError as e:
                raise TransientBackendError(BACKEND, f"DAG {live.name} still has running tasks: {e}") from e
            notes.append("deleted DAG record")
        log.info("airflow.dag.deleted", dag_id=live.name, steps=notes)
        return ApplyResult(action_id=action_id, changed=bool(notes), message="; ".join(notes) or "absent")

    # --- runs and pausing (for the rollout and gates) -----------------------------------------

    def trigger_run(
        self, dag_id: str, run_id: str, conf: dict[str, Any], logical_date: datetime | None = None
    ) -> str:
        """Create run ``run_id`` (deterministic id ⇒ idempotent); returns its state.

        An existing run with that id (409) counts as done: its current state is returned.
        """
        fields: dict[str, Any] = {"dag_run_id": run_id, "conf": conf}
        if logical_date is not None:
            if logical_date.tzinfo is None:
                raise ValueError("logical_date must be timezone-aware")
            fields["logical_date"] = logical_date
        try:
            run = self._call(
                "post_dag_run", self._runs.post_dag_run, dag_id, DAGRun(**fields), _check_return_type=False
            )
            log.info("airflow.run.triggered", dag_id=dag_id, run_id=run_id)
            return str(_run_record(run)["state"])
        except ConflictError as e:
            existing = self._get_run(dag_id, run_id)
            if existing is None:
                raise ConflictError(
                    f"airflow: run {run_id} of {dag_id} conflicts with another run (same logical date?): {e}"
                ) from e
            log.info("airflow.run.exists", dag_id=dag_id, run_id=run_id)
            return str(existing["state"])

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        """The run's state (queued, running, success, failed), None if no such run."""
        run = self._get_run(dag_id, run_id)
        return None if run is None else str(run["state"])

    def list_runs(self, dag_id: str, states: list[str] | None = None) -> list[dict[str, Any]]:
        """Runs of ``dag_id`` (optionally only those in ``states``), oldest first, as plain dicts:
        run_id, state, run_type, logical_date, start_date, end_date (aware datetimes or None), conf."""
        filters: dict[str, Any] = {"state": states} if states else {}
        runs: list[Any] = []
        while True:
            page = self._call(
                "get_dag_runs", self._runs.get_dag_runs, dag_id, limit=_PAGE, offset=len(runs),
                order_by="execution_date", _check_return_type=False, **filters,
            )
            batch = list(page.dag_runs or [])
            runs.extend(batch)
            if not batch or len(runs) >= int(page.total_entries or 0):
                break
        return [_run_record(r) for r in runs]

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self._patch_paused(dag_id, paused)

    # --- calls ---------------------------------------------------------------------------------

    def _get_dag(self, dag_id: str, *, only_active: bool = True) -> Any:
        dag = self._call("get_dag", self._dags.get_dag, dag_id, missing_ok=True)
        if dag is None or (only_active and not dag.is_active):
            return None
        return dag

    def _get_run(self, dag_id: str, run_id: str) -> dict[str, Any] | None:
        run = self._call(
            "get_dag_run", self._runs.get_dag_run, dag_id, run_id, missing_ok=True, _check_return_type=False
        )
        return None if run is None else _run_record(run)

    def _patch_paused(self, dag_id: str, paused: bool) -> None:
        body = DAG(is_paused=paused)
        self._call("patch_dag", self._dags.patch_dag, dag_id, body, update_mask=["is_paused"])
        log.info("airflow.dag.paused" if paused else "airflow.dag.unpaused", dag_id=dag_id)

    def _import_error(self, file_name: str) -> Any:
        """The import error Airflow holds for ``file_name`` (matched by base name), if any."""
        seen = 0
        while True:
            page = self._call(
                "get_import_errors", self._import_errors.get_import_errors, limit=_PAGE, offset=seen
            )
            batch = list(page.import_errors or [])
            for e in batch:
                if PurePath(str(e.filename)).name == file_name:
                    return e
            seen += len(batch)
            if not batch or seen >= int(page.total_entries or 0):
                return None

    def _request_reparse(self, file_token: str) -> None:
        """Ask for a priority re-parse (best effort: the periodic parse picks the file up anyway)."""
        try:
            self._call("reparse_dag_file", self._dags.reparse_dag_file, file_token, missing_ok=True)
        except PermanentBackendError as e:
            log.info("airflow.reparse.unavailable", error=str(e))

    def _call(
        self, op: str, fn: Callable[..., Any], *args: Any, missing_ok: bool = False, **kwargs: Any
    ) -> Any:
        """One API round trip: counted, bounded in time, errors wrapped, transient ones retried.

        404 returns None when ``missing_ok``; 409 raises ``ConflictError``.
        """

        @retrying()
        def once() -> Any:
            self.stats.count(op)
            try:
                return fn(*args, _request_timeout=self._timeout, **kwargs)
            except ApiException as e:
                if e.status == 404 and missing_ok:
                    return None
                raise _wrap(op, e) from e
            except (urllib3.exceptions.HTTPError, OSError) as e:
                raise TransientBackendError(BACKEND, f"{op}: {type(e).__name__}: {e}") from e
            except OpenApiException as e:
                raise PermanentBackendError(BACKEND, f"{op}: unexpected response: {e}") from e

        return once()


def _wrap(op: str, e: ApiException) -> Exception:
    status = int(e.status or 0)
    detail = _detail(e)
    msg = f"{op}: HTTP {status} {e.reason or ''}".rstrip() + (f": {detail}" if detail else "")
    if status == 409:
        return ConflictError(f"{BACKEND}: {msg}")
    if status in (401, 403):
        return PermanentBackendError(BACKEND, f"{msg} (check the Airflow username/password and role)")
    if status in (408, 429) or status >= 500:
        return TransientBackendError(BACKEND, msg)
    return PermanentBackendError(BACKEND, msg)


def _detail(e: ApiException) -> str:
    """The problem's ``detail`` from the JSON body (never the headers: they may carry a session cookie)."""
    body = e.body.decode("utf-8", "replace") if isinstance(e.body, bytes) else str(e.body or "")
    try:
        parsed = json.loads(body)
    except ValueError:
        return body[:300]
    return str(parsed.get("detail") or parsed.get("title") or "")[:300] if isinstance(parsed, dict) else ""


def _tags(dag: Any) -> list[str]:
    return [str(t.name) for t in (dag.tags or [])]


def _run_record(run: Any) -> dict[str, Any]:
    """A DAG run as a plain dict. Runs are read unchecked (``_check_return_type=False``): the
    client's type coercion would turn ``conf`` integers into floats."""

    def get(key: str) -> Any:
        value = run.get(key) if isinstance(run, dict) else getattr(run, key, None)
        return getattr(value, "value", value)

    def when(key: str) -> datetime | None:
        v = get(key)
        return datetime.fromisoformat(v) if isinstance(v, str) else v

    return {
        "run_id": get("dag_run_id"),
        "state": get("state"),
        "run_type": get("run_type"),
        "logical_date": when("logical_date"),
        "start_date": when("start_date"),
        "end_date": when("end_date"),
        "conf": dict(get("conf") or {}),
    }


@dataclass
class _PickupWait:
    deadline: float
    baseline: datetime | None
    err_before: Any
    fresh: set[str] = field(default_factory=set)


def _not_picked_up(d: DagResource, dag: Any, timeout: float) -> str:
    seen = "not reported" if dag is None else (
        f"reported active={dag.is_active} tags={_tags(dag)} last_parsed={dag.last_parsed_time}"
    )
    return (
        f"DAG {d.name} not picked up at version {d.version} within {timeout:.0f}s ({seen}); "
        "is the scheduler's DAG processor running and reading the DAG folder?"
    )


def _schedule(dag: Any) -> str | None:
    """The schedule Airflow reports: a CronExpression's text (presets stay as written), None for a
    DAG without one; a timedelta schedule (not expressible in a manifest) as its repr."""
    si = dag.get("schedule_interval") if hasattr(dag, "get") else getattr(dag, "schedule_interval", None)
    if si is None:
        return None
    value = si.get("value") if hasattr(si, "get") else getattr(si, "value", None)
    return str(value) if isinstance(value, str) else repr(si)


def _schedule_ignored(d: DagResource, dag: Any) -> str:
    return (
        f"DAG {d.name}: Airflow reports schedule {_schedule(dag)!r}, the manifest says {d.schedule!r}; "
        f"{d.file_name} must pass PIPECTL.get('schedule') (from its .pipectl.json sidecar) to "
        "DAG(schedule=...), or the manifest must leave dags[].schedule unset"
    )


def _ready(dag: Any, d: DagResource, baseline: datetime | None, *, check_schedule: bool = True) -> bool:
    """Airflow reports the DAG active at the desired version (and schedule, when the manifest sets
    it), parsed after ``baseline`` if given."""
    if dag is None or not dag.is_active or tag_value(_tags(dag), "version") != d.version:
        return False
    if d.source_digest and tag_value(_tags(dag), "source") != source_tag(d.source_digest):
        return False
    if check_schedule and d.schedule_managed and _schedule(dag) != d.schedule:
        return False
    if baseline is not None:
        parsed = dag.last_parsed_time
        return parsed is not None and bool(parsed > baseline)
    return True
