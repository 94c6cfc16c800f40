"""Promotion gates: one pure function per gate type, from (gate, context, data) to a verdict.

``evaluate(gate, ctx, data)`` returns a ``GateVerdict`` — pass, fail or inconclusive — with a
message for people and the evidence (figures, SQL, incompatibilities) the audit ledger stores.
Inconclusive means "not enough data yet": the engine evaluates the gate again later and neither
promotes nor rolls back meanwhile. ``evaluate`` does not raise for conditions of the world
(backend errors become verdicts: transient → inconclusive, permanent → fail).

- ``schemaCompatibility`` — every schema of the release against its earlier known-good versions
  under the declared mode (see ``schema_compat``; the mode's rollout order is ``ordering``).
- ``dataQuality`` — the gate's SQL, rewritten to the stage's tables (``sqlrewrite``), run through
  Presto; its single numeric cell is compared with ``expect``.
- ``streamingHealth`` — per streaming job: consumer lag (records and seconds), batch duration,
  processing rate against input rate, from the job's latest progress and Kafka's end offsets;
  with ``maxUndecodableRecords``, the records the job could not decode (``controller.jobkit.wire``).
- ``canaryComparison`` — canary vs baseline outputs over the same closed windows, per metric a
  statistic (``canary``, ``canary_query``, ``statistics``).
- ``approval`` — a principal's ``pipectl approve`` recorded for this release, stage, version and
  revision digest.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from controller.model.errors import PermanentBackendError, TransientBackendError
from controller.model.manifest import (
    ApprovalGate,
    CanaryComparisonGate,
    DataQualityGate,
    Gate,
    SchemaCompatibilityGate,
    StreamingHealthGate,
    StreamingJobSpec,
    parse_duration,
    parse_expectation,
)
from controller.model.reasons import Verdict
from controller.plan.desired import topic_name
from controller.rollout import schema_compat
from controller.rollout.canary import evaluate_canary
from controller.rollout.context import (
    GateContext,
    GateData,
    GateVerdict,
    JobNotFound,
    ProgressView,
    as_utc,
    default_jobs,
    default_tables,
    worst,
)
from controller.rollout.health import JobHealth, job_health
from controller.rollout.schema_compat import SchemaParseError, ordering
from controller.rollout.sqlrewrite import SqlRefused, rewrite_tables

__all__ = [
    "GateContext",
    "GateData",
    "GateVerdict",
    "JobNotFound",
    "ProgressView",
    "applicable",
    "compare",
    "default_jobs",
    "default_tables",
    "evaluate",
    "evaluate_all",
    "ordering",
]

STALE_FACTOR = 2.0
"""Progress older than this many gate windows is stale: the job is judged inconclusive."""


def applicable(gate: Gate, stage: str) -> bool:
    """Whether ``gate`` runs at ``stage`` (a gate without ``stages`` runs at every stage)."""
    return gate.stages is None or stage in gate.stages


def evaluate(gate: Gate, ctx: GateContext, data: GateData) -> GateVerdict:
    """The verdict of one gate at ``ctx.stage``."""
    if isinstance(gate, SchemaCompatibilityGate):
        return _schema_compatibility(gate, ctx, data)
    if isinstance(gate, DataQualityGate):
        return _data_quality(gate, ctx, data)
    if isinstance(gate, StreamingHealthGate):
        return _streaming_health(gate, ctx, data)
    if isinstance(gate, CanaryComparisonGate):
        return evaluate_canary(gate, ctx, data)
    if isinstance(gate, ApprovalGate):
        return _approval(gate, ctx, data)
    raise TypeError(f"unknown gate type {type(gate).__name__}")  # pragma: no cover - closed union


def evaluate_all(ctx: GateContext, data: GateData) -> list[GateVerdict]:
    """Verdicts of every gate of the release that applies at ``ctx.stage``, in manifest order."""
    return [evaluate(g, ctx, data) for g in ctx.release.spec.rollout.gates if applicable(g, ctx.stage)]


def _verdict(
    gate: Gate, verdict: Verdict, message: str, evidence: dict[str, Any] | None = None
) -> GateVerdict:
    return GateVerdict(
        name=gate.name, type=gate.type, verdict=verdict, message=message, evidence=evidence or {}
    )


# --- schemaCompatibility --------------------------------------------------------------------


def _schema_compatibility(gate: SchemaCompatibilityGate, ctx: GateContext, data: GateData) -> GateVerdict:
    schemas = ctx.release.spec.schemas
    if not schemas:
        return _verdict(gate, Verdict.PASS, "the release declares no schemas")
    per_schema: list[dict[str, Any]] = []
    verdicts: list[Verdict] = []
    messages: list[str] = []
    for s in schemas:
        ev: dict[str, Any] = {
            "schema": s.name,
            "format": s.format.value,
            "compatibility": s.compatibility.value,
            "ordering": ordering(s.compatibility),
        }
        per_schema.append(ev)
        text = ctx.schemas.get(s.name)
        if text is None:
            verdicts.append(Verdict.FAIL)
            messages.append(f"{s.name}: schema text {s.path} not provided")
            continue
        ev["fingerprint"] = schema_compat.fingerprint(text)
        try:
            previous = data.live_schema(ctx.release.name, s.name)
        except TransientBackendError as e:
            verdicts.append(Verdict.INCONCLUSIVE)
            messages.append(f"{s.name}: {e}")
            continue
        except PermanentBackendError as e:
            verdicts.append(Verdict.FAIL)
            messages.append(f"{s.name}: {e}")
            continue
        ev["previous_versions"] = [schema_compat.fingerprint(t) for t in previous]
        if not previous:
            verdicts.append(Verdict.PASS)
            messages.append(f"{s.name}: first version")
            continue
        try:
            found = schema_compat.check(s.format, s.compatibility, text, previous)
        except SchemaParseError as e:
            verdicts.append(Verdict.FAIL)
            messages.append(f"{s.name}: {e}")
            continue
        ev["incompatibilities"] = [i.as_evidence() for i in found]
        if found:
            verdicts.append(Verdict.FAIL)
            first = found[0]
            messages.append(
                f"{s.name}: not {s.compatibility.value} compatible "
                f"({first.direction} vs earlier version #{first.against}: {first.message} at {first.location}"
                + (f"; {len(found) - 1} more" if len(found) > 1 else "")
                + ")"
            )
        else:
            verdicts.append(Verdict.PASS)
            note = "not checked" if s.compatibility.value == "NONE" else "compatible"
            messages.append(f"{s.name}: {s.compatibility.value} {note}")
    verdict = worst(verdicts)
    shown = [m for m, v in zip(messages, verdicts, strict=True) if v is verdict]
    return _verdict(gate, verdict, "; ".join(shown), {"schemas": per_schema})


# --- dataQuality ----------------------------------------------------------------------------

_OPS: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


def compare(value: float, expect: str) -> bool:
    """Whether ``value`` satisfies an expectation such as ``'> 0'`` or ``'<= 0.01'``."""
    op, bound = parse_expectation(expect)
    return _OPS[op](value, bound)


def _data_quality(gate: DataQualityGate, ctx: GateContext, data: GateData) -> GateVerdict:
    ev: dict[str, Any] = {"query": gate.query, "expect": gate.expect}
    try:
        sql = rewrite_tables(gate.query, {k: ctx.relation(v) for k, v in ctx.tables.items()})
    except SqlRefused as e:
        return _verdict(gate, Verdict.FAIL, f"query refused: {e}", ev)
    ev["sql"] = sql
    try:
        rows = data.query(sql)
    except TransientBackendError as e:
        return _verdict(gate, Verdict.INCONCLUSIVE, f"query could not run yet: {e}", ev)
    except PermanentBackendError as e:
        return _verdict(gate, Verdict.FAIL, f"query failed: {e}", ev)
    ev["rows"] = len(rows)
    if not rows:
        return _verdict(gate, Verdict.INCONCLUSIVE, "query returned no rows", ev)
    if len(rows) > 1 or len(rows[0]) != 1:
        return _verdict(
            gate,
            Verdict.FAIL,
            f"query must return one row with one column, got {len(rows)} row(s) of {len(rows[0])} column(s)",
            ev,
        )
    cell = rows[0][0]
    if cell is None:
        return _verdict(gate, Verdict.INCONCLUSIVE, "query returned NULL", ev)
    value = _number(cell)
    if value is None:
        ev["value"] = repr(cell)
        return _verdict(gate, Verdict.FAIL, f"query returned {cell!r}, not a number", ev)
    ev["value"] = value
    if math.isnan(value):
        return _verdict(gate, Verdict.INCONCLUSIVE, "query returned NaN", ev)
    if compare(value, gate.expect):
        return _verdict(gate, Verdict.PASS, f"{_fmt(value)} {gate.expect.strip()}", ev)
    return _verdict(gate, Verdict.FAIL, f"{_fmt(value)} does not satisfy '{gate.expect.strip()}'", ev)


def _number(cell: object) -> float | None:
    if isinstance(cell, bool):
        return 1.0 if cell else 0.0
    if isinstance(cell, int | float | Decimal):  # pyhive returns Presto's DECIMAL as Decimal
        return float(cell)
    if isinstance(cell, str):
        try:
            return float(cell)
        except ValueError:
            return None
    return None


def _fmt(v: float) -> str:
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else f"{v:.6g}"


# --- streamingHealth ------------------------------------------------------------------------


def _streaming_health(gate: StreamingHealthGate, ctx: GateContext, data: GateData) -> GateVerdict:
    jobs = ctx.release.spec.streaming_jobs
    if not jobs:
        return _verdict(gate, Verdict.PASS, "the release runs no streaming jobs")
    results = [_job_health(gate, ctx, data, job) for job in jobs]
    verdict = worst([r[0] for r in results])
    shown = [r[1] for r in results if r[0] is verdict]
    return _verdict(gate, verdict, "; ".join(shown), {"jobs": [r[2] for r in results]})


def _job_health(
    gate: StreamingHealthGate, ctx: GateContext, data: GateData, job: StreamingJobSpec
) -> tuple[Verdict, str, dict[str, Any]]:
    """One job's verdict, message and figures (from ``health.job_health``, the one health function)."""
    window = parse_duration(gate.window)
    physical = ctx.jobs.get(job.name)
    ev: dict[str, Any] = {"job": job.name, "window_seconds": window}
    if physical is None:
        return Verdict.FAIL, f"{job.name}: no deployed job is mapped at stage {ctx.stage}", ev
    ev["deployed_as"] = physical
    try:
        progress = data.job_progress(physical)
        if progress is None:
            return Verdict.INCONCLUSIVE, f"{physical}: no progress reported yet", ev
        if progress.batch_id == 0:
            # Spark reports no input rate for a query's first batch, which also carries JVM warm-up.
            ev["batch_id"] = 0
            return Verdict.INCONCLUSIVE, f"{physical}: only the first batch has run (warming up)", ev
        ends = {t: data.end_offsets(t) for t in (topic_name(ctx.stage_ctx, s.topic) for s in job.sources)}
    except JobNotFound:
        return Verdict.FAIL, f"{physical}: job not found", ev
    except TransientBackendError as e:
        return Verdict.INCONCLUSIVE, f"{physical}: {e}", ev
    except PermanentBackendError as e:
        return Verdict.FAIL, f"{physical}: {e}", ev
    h = job_health(progress, ends, ctx.now_utc)
    ev.update(_health_evidence(h, progress.timestamp))
    undecodable = _judge_undecodable(gate, progress, ev)
    if undecodable is not None:
        return Verdict.FAIL, f"{physical}: {undecodable}", ev
    ev["max_lag_seconds"] = gate.max_lag_seconds
    ev["max_batch_duration_seconds"] = gate.max_batch_duration_seconds
    ev["min_processed_rows_per_second"] = gate.min_processing_ratio * h.input_rows_per_second
    if h.progress_age_seconds > STALE_FACTOR * window:
        return (
            Verdict.INCONCLUSIVE,
            f"{physical}: latest progress is {h.progress_age_seconds:.0f}s old "
            f"(older than {STALE_FACTOR:g} x the {gate.window} window)",
            ev,
        )
    verdict, message = _judge_health(gate, h)
    return verdict, f"{physical}: {message}", ev


def _judge_undecodable(gate: StreamingHealthGate, progress: ProgressView, ev: dict[str, Any]) -> str | None:
    """Why the job's undecodable records fail ``maxUndecodableRecords``, or None (also unset)."""
    if progress.undecodable_records is not None:
        ev["undecodable_records"] = progress.undecodable_records
    limit = gate.max_undecodable_records
    if limit is None:
        return None
    ev["max_undecodable_records"] = limit
    if progress.undecodable_records is None:
        return (
            "the job reports no count of undecodable records, so maxUndecodableRecords cannot be judged "
            "(a job reports it when it decodes with controller.jobkit.wire.decode_confluent)"
        )
    if progress.undecodable_records > limit:
        return f"{progress.undecodable_records} undecodable records since the job started > {limit}"
    return None


def _health_evidence(h: JobHealth, progress_time: datetime) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "batch_id": h.batch_id,
        "progress_time": as_utc(progress_time).isoformat(),
        "progress_age_seconds": h.progress_age_seconds,
        "lag_records": h.lag_records,
        "lag_records_by_topic": h.lag_records_by_topic,
        "input_rows_per_second": h.input_rows_per_second,
        "processed_rows_per_second": h.processed_rows_per_second,
        "batch_duration_seconds": h.batch_duration_seconds,
        "lag_seconds": h.lag_seconds,
        "lag_seconds_basis": h.lag_basis,
    }
    if h.freshness_seconds is not None:
        ev["event_time_freshness_seconds"] = h.freshness_seconds
    return ev


def _judge_health(gate: StreamingHealthGate, h: JobHealth) -> tuple[Verdict, str]:
    """One progress report is one micro-batch: a single slow batch or a momentary rate dip on a busy
    machine is noise. Such a snapshot is inconclusive (the gate looks again next pass); falling
    behind for real shows up as lag, which fails. A batch-duration limit is judged only when set."""
    window = parse_duration(gate.window)
    lag = f"lag {h.lag_seconds:.0f}s ({h.lag_records} records)"
    rates = f"processing {h.processed_rows_per_second:.1f} rows/s"
    if h.lag_seconds > gate.max_lag_seconds and h.catching_up and h.progress_age_seconds <= window:
        return (
            Verdict.INCONCLUSIVE,
            f"{lag} > {gate.max_lag_seconds:g}s but catching up ({rates} > input "
            f"{h.input_rows_per_second:.1f} rows/s); watching",
        )
    problems: list[str] = []
    if h.lag_seconds > gate.max_lag_seconds:
        problems.append(f"{lag} > {gate.max_lag_seconds:g}s")
    limit = gate.max_batch_duration_seconds
    if limit is not None and h.batch_duration_seconds > limit:
        problems.append(f"batch took {h.batch_duration_seconds:.1f}s > {limit:g}s")
    if problems:
        return Verdict.FAIL, "; ".join(problems)
    required = gate.min_processing_ratio * h.input_rows_per_second
    if h.input_rows_per_second > 0 and h.processed_rows_per_second < required:
        return (
            Verdict.INCONCLUSIVE,
            f"last batch processed {h.processed_rows_per_second:.1f} rows/s < "
            f"{gate.min_processing_ratio:g} x input {h.input_rows_per_second:.1f} rows/s "
            f"(lag {h.lag_seconds:.0f}s is within {gate.max_lag_seconds:g}s); watching",
        )
    return (
        Verdict.PASS,
        f"{lag}, batch {h.batch_duration_seconds:.1f}s, {rates} "
        f"for input {h.input_rows_per_second:.1f} rows/s",
    )


# --- approval -------------------------------------------------------------------------------


def _approval(gate: ApprovalGate, ctx: GateContext, data: GateData) -> GateVerdict:
    """Passes only on an approval of this version AND this revision digest: approving 1.0.0 never
    approves other content, nor a later version committed meanwhile."""
    release, stage, version = ctx.release.name, ctx.stage, ctx.version
    ev: dict[str, Any] = {"release": release, "stage": stage, "version": version}
    if ctx.revision:
        ev["revision"] = ctx.revision
    try:
        # no known revision (never deployed): nothing can have approved it
        approver = data.approval(release, stage, version, ctx.revision) if ctx.revision else None
    except TransientBackendError as e:
        return _verdict(gate, Verdict.INCONCLUSIVE, f"approval could not be read: {e}", ev)
    except PermanentBackendError as e:
        return _verdict(gate, Verdict.FAIL, f"approval could not be read: {e}", ev)
    if approver:
        ev["approver"] = approver
        return _verdict(gate, Verdict.PASS, f"approved by {approver}", ev)
    return _verdict(
        gate, Verdict.INCONCLUSIVE, f"awaiting approval: pipectl approve {release} --stage {stage}", ev
    )
