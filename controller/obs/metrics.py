"""Prometheus metrics of the controller, in one dedicated registry (``REGISTRY``).

The names and labels are a contract with ``manifests/platform/monitoring/pipectl-alerts.yaml`` and
``grafana-pipectl.json`` (``tests/unit/obs/test_alert_rules.py`` checks every name the rules use
exists here). Callers use the helper functions rather than the metric objects, so label order and
the single-series rule of ``pipectl_release_info`` live in one place.

Label values:

* ``result`` of a reconcile pass: ``success``, ``error`` or ``requeue``; of an action: ``done``,
  ``failed`` or ``skipped``.
* ``reason``: a :class:`controller.model.reasons.Reason` value (``ApplyFailed``, ``RollbackFailed`` …).
* ``verdict``: ``pass``, ``fail`` or ``inconclusive``.
* ``verb`` of a Kubernetes request: ``list`` or ``watch`` (``controller/adapters/kube.py``).
* ``backend``: ``state`` for the state store (``STATE_BACKEND``), otherwise a backend kind
  (``kafka``, ``hive``, ``presto``, ``airflow``, ``spark``), optionally ``kind/stage``.

The streaming job's name is the label ``streaming_job``, not ``job``: every scrape sets ``job``
(and ``instance``) to the target's, renaming a metric's own ``job`` to ``exported_job``, which
rules could not group by reliably. ``pipectl_leader`` keeps its ``instance`` label (it becomes
``exported_instance`` unless the scrape sets ``honor_labels``); the rules only ever ``sum`` it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from controller.model.reasons import Reason, Verdict
from controller.obs.series import CounterSeries, GaugeSeries, HistogramSeries

__all__ = [
    "CONTENT_TYPE_LATEST",
    "FRESHNESS_OBJECTIVE_SECONDS",
    "REGISTRY",
    "STATE_BACKEND",
    "clear_leader_series",
    "exposed_names",
    "forget_release",
    "init_release",
    "observe_reconcile",
    "record_action",
    "record_event_dropped",
    "record_gate_result",
    "record_kube_request",
    "record_reconcile_error",
    "record_rollback",
    "render",
    "set_audit_chain_ok",
    "set_backend_up",
    "set_drift",
    "set_event_freshness",
    "set_leader",
    "set_release_info",
    "set_streaming_lag",
    "set_undecodable_records",
]

REGISTRY = CollectorRegistry(auto_describe=True)

STATE_BACKEND = "state"
"""The ``backend`` label value of the controller's own state store."""

FRESHNESS_OBJECTIVE_SECONDS = 120.0
"""The brief's objective: P95 of ingest→queryable freshness under 2 minutes."""

# Reconcile passes range from a no-op (milliseconds) to a plan that waits on a Spark job (minutes).
_RECONCILE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

RECONCILE_DURATION = HistogramSeries(
    "pipectl_reconcile_duration_seconds",
    "Duration of one reconcile pass of a release.",
    ["release", "result"],
    REGISTRY,
    _RECONCILE_BUCKETS,
)
ACTIONS = Counter(
    "pipectl_actions_total",
    "Plan actions executed, by resource kind and result.",
    ["kind", "result"],
    registry=REGISTRY,
)
DRIFT_RESOURCES = GaugeSeries(
    "pipectl_drift_resources",
    "Resources whose live state differs from git at the last pass.",
    ["release", "stage"],
    REGISTRY,
)
GATE_RESULTS = CounterSeries(
    "pipectl_gate_results_total",
    "Gate evaluations, by gate name and verdict.",
    ["gate", "verdict"],
    REGISTRY,
)
ROLLBACKS = CounterSeries(
    "pipectl_rollbacks_total",
    "Automatic or manual rollbacks to the last good version.",
    ["release", "stage"],
    REGISTRY,
)
RELEASE_INFO = GaugeSeries(
    "pipectl_release_info",
    "1 for the current version and phase of each release at each stage.",
    ["release", "stage", "version", "phase"],
    REGISTRY,
)
RECONCILE_ERRORS = CounterSeries(
    "pipectl_reconcile_errors_total",
    "Reconcile passes that ended in an error, by named reason.",
    ["release", "reason"],
    REGISTRY,
)
STREAMING_LAG = GaugeSeries(
    "pipectl_streaming_lag_seconds",
    "How far a streaming job's consumer is behind the head of its input topics, in seconds.",
    ["release", "stage", "streaming_job"],
    REGISTRY,
)
EVENT_FRESHNESS = GaugeSeries(
    "pipectl_event_freshness_seconds",
    "Now minus the newest event time queryable in a streaming job's output (ingest to queryable).",
    ["release", "stage", "streaming_job"],
    REGISTRY,
)
UNDECODABLE_RECORDS = GaugeSeries(
    "pipectl_streaming_undecodable_records",
    "Records a streaming job could not decode since it started (no Confluent header, a schema id the "
    "registry does not know, a body its writer schema does not read), from its status file.",
    ["release", "stage", "streaming_job"],
    REGISTRY,
)
BACKEND_UP = Gauge(
    "pipectl_backend_up",
    "1 when the last call to the backend (or the state store: backend=state) succeeded.",
    ["backend"],
    registry=REGISTRY,
)
AUDIT_CHAIN_OK = Gauge(
    "pipectl_audit_chain_ok",
    "1 when the last verification of the audit ledger's hash chain passed, 0 when it failed.",
    registry=REGISTRY,
)
# NaN ("not verified yet") rather than the default 0, which would read as a broken chain.
AUDIT_CHAIN_OK.set(float("nan"))
LEADER = Gauge(
    "pipectl_leader",
    "1 on the controller instance that holds the leader lock or Lease.",
    ["instance"],
    registry=REGISTRY,
)
LAST_RECONCILE = GaugeSeries(
    "pipectl_last_reconcile_timestamp_seconds",
    "Unix time of the end of the last reconcile pass of a release (the controller's heartbeat).",
    ["release"],
    REGISTRY,
)
EVENTS_DROPPED = Counter(
    "pipectl_events_dropped_total",
    "Operational events an event sink failed to write.",
    ["sink"],
    registry=REGISTRY,
)
KUBE_REQUESTS = Counter(
    "pipectl_kube_requests_total",
    "Requests for PipelineRelease objects to the Kubernetes API (--source kubernetes), by verb.",
    ["verb"],
    registry=REGISTRY,
)

_ALL = (
    RECONCILE_DURATION,
    ACTIONS,
    DRIFT_RESOURCES,
    GATE_RESULTS,
    ROLLBACKS,
    RELEASE_INFO,
    RECONCILE_ERRORS,
    STREAMING_LAG,
    EVENT_FRESHNESS,
    UNDECODABLE_RECORDS,
    BACKEND_UP,
    AUDIT_CHAIN_OK,
    LEADER,
    LAST_RECONCILE,
    EVENTS_DROPPED,
    KUBE_REQUESTS,
)

_lock = threading.Lock()
# (release, stage) -> (version, phase) of the one pipectl_release_info series that is 1.
_release_info: dict[tuple[str, str], tuple[str, str]] = {}


def observe_reconcile(release: str, result: str, seconds: float) -> None:
    """Record one reconcile pass and move the release's heartbeat to now."""
    RECONCILE_DURATION.observe(release, result, amount=seconds)
    LAST_RECONCILE.set(release, value=time.time())


def record_reconcile_error(release: str, reason: str) -> None:
    RECONCILE_ERRORS.inc(release, reason)


def record_action(kind: str, result: str) -> None:
    ACTIONS.labels(kind, result).inc()


def set_drift(release: str, stage: str, resources: int) -> None:
    DRIFT_RESOURCES.set(release, stage, value=resources)


def record_gate_result(gate: str, verdict: str) -> None:
    GATE_RESULTS.inc(gate, verdict)


def record_rollback(release: str, stage: str) -> None:
    ROLLBACKS.inc(release, stage)


def set_release_info(release: str, stage: str, version: str | None, phase: str) -> None:
    """Make ``{release, stage, version, phase}`` the only series of this release/stage that is 1.

    The previous version/phase series is removed rather than set to 0, so ``count by (phase)``
    and ``for:`` clauses in the alert rules see exactly one series per release and stage.
    """
    key = (release, stage)
    new = (version or "", phase)
    with _lock:
        old = _release_info.get(key)
        if old is not None and old != new:
            RELEASE_INFO.remove(release, stage, *old)
        RELEASE_INFO.set(release, stage, *new, value=1)
        _release_info[key] = new


ERROR_REASONS = (
    Reason.BACKEND_UNAVAILABLE,
    Reason.APPLY_FAILED,
    Reason.CONFIGURATION_ERROR,
    Reason.RECONCILE_ERROR,
    Reason.ROLLBACK_FAILED,
)
"""The named reasons ``record_reconcile_error`` is called with (the alert rules select on them)."""
_ERROR_REASON_LABELS = tuple(str(r) for r in ERROR_REASONS)
_VERDICT_LABELS = tuple(str(v) for v in Verdict)


def init_release(release: str, stages: Iterable[str], gates: Iterable[str] = ()) -> None:
    """Create a release's counters at 0 so the first increment shows up in ``increase()`` (a
    series born at 1 has no earlier sample to increase from, and the alert would never fire)."""
    for stage in stages:
        ROLLBACKS.touch(release, stage)
        DRIFT_RESOURCES.touch(release, stage)
    for reason in _ERROR_REASON_LABELS:
        RECONCILE_ERRORS.touch(release, reason)
    for gate in gates:
        for verdict in _VERDICT_LABELS:
            GATE_RESULTS.touch(gate, verdict)


def forget_release(release: str) -> None:
    """Drop every series of a release that left git, so it stops showing on dashboards."""
    with _lock:
        for key in [k for k in _release_info if k[0] == release]:
            RELEASE_INFO.remove(release, key[1], *_release_info.pop(key))
    for metric in (
        RECONCILE_DURATION,
        RECONCILE_ERRORS,
        DRIFT_RESOURCES,
        ROLLBACKS,
        STREAMING_LAG,
        EVENT_FRESHNESS,
        UNDECODABLE_RECORDS,
        LAST_RECONCILE,
    ):
        metric.remove_by_labels({"release": release})


def clear_leader_series() -> None:
    """Drop what only the leader knows (per-release state, backend health) when leadership is lost.

    A standby keeps serving ``/metrics``; left alone, its last values as leader would go on
    raising stuck-phase, drift and heartbeat alerts. The new leader re-exports them on its passes.
    """
    with _lock:
        _release_info.clear()
        RELEASE_INFO.clear()
    for metric in (
        DRIFT_RESOURCES, STREAMING_LAG, EVENT_FRESHNESS, UNDECODABLE_RECORDS, LAST_RECONCILE, BACKEND_UP
    ):
        metric.clear()


def set_streaming_lag(release: str, stage: str, job: str, seconds: float) -> None:
    STREAMING_LAG.set(release, stage, job, value=seconds)


def set_event_freshness(release: str, stage: str, job: str, seconds: float) -> None:
    EVENT_FRESHNESS.set(release, stage, job, value=seconds)


def set_undecodable_records(release: str, stage: str, job: str, count: int) -> None:
    UNDECODABLE_RECORDS.set(release, stage, job, value=count)


def set_backend_up(backend: str, up: bool) -> None:
    BACKEND_UP.labels(backend).set(1 if up else 0)


def set_audit_chain_ok(ok: bool) -> None:
    AUDIT_CHAIN_OK.set(1 if ok else 0)


def set_leader(instance: str, is_leader: bool) -> None:
    LEADER.labels(instance).set(1 if is_leader else 0)


def record_event_dropped(sink: str) -> None:
    EVENTS_DROPPED.labels(sink).inc()


def record_kube_request(verb: str) -> None:
    KUBE_REQUESTS.labels(verb).inc()


def render() -> bytes:
    """The registry in the Prometheus text format, for ``GET /metrics`` (``CONTENT_TYPE_LATEST``)."""
    return generate_latest(REGISTRY)


def exposed_names() -> dict[str, set[str]]:
    """Every sample name the registry can expose, mapped to the labels it carries.

    Derived from the metric types, so a metric with no series yet is included too.
    """
    suffixes = {
        "counter": ("_total",),
        "gauge": ("",),
        "histogram": ("_bucket", "_count", "_sum"),
    }
    out: dict[str, set[str]] = {}
    for metric in _ALL:
        for family in metric.describe():
            labels = set(getattr(metric, "_labelnames", ()))
            for suffix in suffixes.get(family.type, ("",)):
                out[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return out
