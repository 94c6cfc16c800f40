"""The ``providers`` of a canaryComparison gate: one number per side, compared like relativeTotal.

For each ``ProviderMetric`` (``controller.model.analysis_providers``) the canary's and the
baseline's value are measured through the data seam, then judged by ``compare``:
``|canary - baseline| <= allowance`` passes; otherwise ``statistics.relative_total`` decides
(``|canary - baseline| / |baseline| > threshold`` fails, a zero baseline fails); equal zeros pass
(a measured zero, unlike a table's missing rows, is a value).

- ``prometheus``: ``GateData.prometheus_query`` at the gate's ``now``, the query's
  ``{{version}}``/``{{stage}}`` set per side (the baseline's stage is the canary's target); the
  sum of the returned series. No series on a side is inconclusive; a stage without a Prometheus
  endpoint fails (the engine's ``prometheus_query`` raises a permanent error).
- ``kafkaLag``: ``health.job_health(progress, end offsets, now).lag_records`` of the side's
  deployed job (``ctx.jobs`` / ``ctx.baseline_jobs``), or of a consumer group's committed offsets
  (``GateData.committed_offsets``). A job without progress yet, or a group without committed
  offsets, is inconclusive.

A transient backend error is inconclusive, a permanent one fails. Pure: ``now`` comes from ``ctx``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from controller.model.analysis_providers import ProviderMetric, substitute_side
from controller.model.errors import PermanentBackendError, TransientBackendError
from controller.model.reasons import Verdict
from controller.rollout.context import GateContext, GateData, JobNotFound, ProgressView, worst
from controller.rollout.health import job_health
from controller.rollout.statistics import MetricOutcome, relative_total


class _NoValue(Exception):
    def __init__(self, verdict: Verdict, message: str):
        super().__init__(message)
        self.verdict = verdict


def compare(name: str, canary: float, baseline: float, threshold: float, allowance: float) -> MetricOutcome:
    """One provider metric's verdict from its two values."""
    if canary == baseline == 0:
        return MetricOutcome(name, "relativeTotal", Verdict.PASS, 0.0, threshold, 1, 1,
                             {"canary_total": 0.0, "baseline_total": 0.0})  # fmt: skip
    out = relative_total(name, canary, baseline, threshold, 1, 1)
    if out.verdict is Verdict.FAIL and abs(canary - baseline) <= allowance:
        detail = {**out.detail, "allowance": allowance}
        note = f"|difference| {abs(canary - baseline):g} within the allowance"
        return MetricOutcome(name, out.statistic, Verdict.PASS, out.value, threshold, 1, 1, detail, note)
    return out


def evaluate_providers(
    providers: Sequence[ProviderMetric], tolerance: float, ctx: GateContext, data: GateData
) -> tuple[Verdict, str, list[dict[str, Any]]]:
    """The providers' worst verdict, its message, and each provider's evidence."""
    if ctx.baseline_version is None:
        return Verdict.PASS, f"providers: no baseline version at stage {ctx.stage} to compare against", []
    verdicts, messages, evidence = [], [], []
    for m in providers:
        threshold = tolerance if m.threshold is None else m.threshold
        ev: dict[str, Any] = {"name": m.name, "provider": "prometheus" if m.prometheus else "kafkaLag"}
        try:
            c, b = _value(m, ctx, data, "canary", ev), _value(m, ctx, data, "baseline", ev)
            out = compare(m.name, c, b, threshold, m.allowance)
            ev.update(out.evidence())
            verdict, msg = out.verdict, _describe(out, c, b)
        except _NoValue as e:
            verdict, msg = e.verdict, f"{m.name}: {e}"
        except TransientBackendError as e:
            verdict, msg = Verdict.INCONCLUSIVE, f"{m.name}: {e}"
        except PermanentBackendError as e:
            verdict, msg = Verdict.FAIL, f"{m.name}: {e}"
        ev["verdict"] = verdict.value
        verdicts.append(verdict)
        messages.append((verdict, msg))
        evidence.append(ev)
    verdict = worst(verdicts)
    return verdict, "; ".join(msg for v, msg in messages if v is verdict), evidence


def _describe(o: MetricOutcome, c: float, b: float) -> str:
    rel = "n/a" if o.value is None else ("inf" if math.isinf(o.value) else f"{o.value:+.2%}")
    return f"{o.column} {c:g} vs baseline {b:g} ({rel}, threshold {o.threshold:.2%})" + (
        f", {o.note}" if o.note else ""
    )


def _value(m: ProviderMetric, ctx: GateContext, data: GateData, side: str, ev: dict[str, Any]) -> float:
    if m.prometheus is not None:
        query = _for_side(m.prometheus.query, ctx, side)
        ev[f"{side}_query"] = query
        values = data.prometheus_query(query, ctx.now_utc)
        if not values:
            raise _NoValue(Verdict.INCONCLUSIVE, f"the {side}'s query returned no series: {query}")
        return math.fsum(values)
    assert m.kafka_lag is not None
    if m.kafka_lag.consumer_group is not None:
        return _group_lag(m.kafka_lag.consumer_group, ctx, data, side, ev)
    if m.kafka_lag.job not in {j.name for j in ctx.release.spec.streaming_jobs}:
        raise _NoValue(Verdict.FAIL, f"kafkaLag job {m.kafka_lag.job!r} is no streaming job of the release")
    jobs = ctx.jobs if side == "canary" else ctx.baseline_jobs
    job = jobs.get(str(m.kafka_lag.job))
    if job is None:
        raise _NoValue(Verdict.INCONCLUSIVE, f"the {side}'s job {m.kafka_lag.job} is not mapped")
    ev[f"{side}_job"] = job
    try:
        progress = data.job_progress(job)
    except JobNotFound:
        raise _NoValue(Verdict.INCONCLUSIVE, f"the {side}'s job {job} is not deployed") from None
    if progress is None:
        raise _NoValue(Verdict.INCONCLUSIVE, f"the {side}'s job {job} has reported no progress yet")
    return _lag(progress, ctx, data, side, ev)


def _group_lag(template: str, ctx: GateContext, data: GateData, side: str, ev: dict[str, Any]) -> float:
    """A consumer group's lag, by ``job_health`` over its committed offsets as the "processed" ones."""
    group = _for_side(template, ctx, side)
    ev[f"{side}_group"] = group
    committed = data.committed_offsets(group)
    if not committed:
        raise _NoValue(Verdict.INCONCLUSIVE, f"the {side}'s consumer group {group} has committed no offsets")
    return _lag(ProgressView(0, None, None, None, committed, None, ctx.now_utc), ctx, data, side, ev)


def _for_side(template: str, ctx: GateContext, side: str) -> str:
    """``template`` with the side's ``{{version}}`` and ``{{stage}}`` (the baseline: the canary's target)."""
    if side == "canary":
        return substitute_side(template, ctx.version, ctx.stage)
    return substitute_side(template, str(ctx.baseline_version), ctx.stage_ctx.canary_of or ctx.stage)


def _lag(progress: ProgressView, ctx: GateContext, data: GateData, side: str, ev: dict[str, Any]) -> float:
    """``job_health``'s lag of ``progress`` behind its topics' end offsets, per topic into ``ev``."""
    ends = {topic: data.end_offsets(topic) for topic in sorted(progress.source_end_offsets)}
    health = job_health(progress, ends, ctx.now_utc)
    ev[f"{side}_lag_by_topic"] = health.lag_records_by_topic
    return float(health.lag_records)
