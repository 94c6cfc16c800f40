"""The canary statistics: pure, deterministic functions of two samples (canary, baseline).

Each returns a ``MetricOutcome``: the verdict, the statistic's value, the threshold it was judged
against, the sample sizes and the figures behind it (the evidence the audit ledger keeps).

- ``relative_total`` — ``(sum(canary) - sum(baseline)) / sum(baseline)``; ``|value| > threshold``
  fails. Its totals come from per-window sums (a window the canary lost counts as zero).
- ``mann_whitney`` — two-sided Mann-Whitney U (``scipy.stats.mannwhitneyu``); ``p < threshold`` fails.
- ``kolmogorov_smirnov`` — two-sample KS (``scipy.stats.ks_2samp``, exact where scipy can); with
  criterion ``pValue`` ``p < threshold`` fails, with ``d`` ``D > threshold`` fails.
- ``quantile_shift`` — relative shift of a quantile (``scipy.stats.scoreatpercentile``, linear),
  ``(q(canary) - q(baseline)) / |q(baseline)|``; ``|value| > threshold`` fails.

Fewer values than ``min_samples`` on a side (``relative_total``: on the baseline) is inconclusive.

scipy is imported by the three statistics that use it, when first called: ``scipy.stats`` adds
~70 MiB to a process, and a controller whose canaries judge totals only (or that runs no canary
gate) never needs it (issue #17: the controller's RSS at 1,000 releases).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from controller.model.analysis import CanaryMetric, KsCriterion, Statistic
from controller.model.reasons import Verdict


@dataclass(frozen=True)
class MetricOutcome:
    """One metric's verdict and why."""

    column: str
    statistic: str
    verdict: Verdict
    value: float | None
    threshold: float
    n_canary: int
    n_baseline: int
    detail: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def evidence(self) -> dict[str, Any]:
        ev: dict[str, Any] = {
            "column": self.column,
            "statistic": self.statistic,
            "verdict": self.verdict.value,
            "value": self.value,
            "threshold": self.threshold,
            "samples": {"canary": self.n_canary, "baseline": self.n_baseline},
        }
        ev.update(self.detail)
        if self.note:
            ev["note"] = self.note
        return ev


def threshold_of(metric: CanaryMetric, tolerance: float, alpha: float) -> float:
    """The metric's threshold, or the gate's default for its statistic (tolerance or alpha)."""
    if metric.threshold is not None:
        return metric.threshold
    if metric.statistic in (Statistic.RELATIVE_TOTAL, Statistic.QUANTILE_SHIFT):
        return tolerance
    return alpha


def judge(
    metric: CanaryMetric,
    threshold: float,
    canary: Sequence[float],
    baseline: Sequence[float],
    totals: tuple[float, float] | None = None,
) -> MetricOutcome:
    """Dispatch on ``metric.statistic``; ``totals`` (canary, baseline) are relativeTotal's sums
    (default: the samples' sums)."""
    if metric.statistic is Statistic.RELATIVE_TOTAL:
        c_total, b_total = totals if totals is not None else (math.fsum(canary), math.fsum(baseline))
        return relative_total(
            metric.column, c_total, b_total, threshold, len(canary), len(baseline), metric.min_samples
        )
    if metric.statistic is Statistic.MANN_WHITNEY_U:
        return mann_whitney(metric.column, canary, baseline, threshold, metric.min_samples)
    if metric.statistic is Statistic.KOLMOGOROV_SMIRNOV:
        return kolmogorov_smirnov(
            metric.column, canary, baseline, threshold, metric.min_samples, metric.criterion
        )
    return quantile_shift(metric.column, canary, baseline, threshold, metric.min_samples, metric.quantile)


def _too_few(
    column: str, stat: Statistic, threshold: float, n_c: int, n_b: int, min_samples: int
) -> MetricOutcome | None:
    if n_c >= min_samples and n_b >= min_samples:
        return None
    return MetricOutcome(
        column,
        stat.value,
        Verdict.INCONCLUSIVE,
        None,
        threshold,
        n_c,
        n_b,
        note=f"fewer than {min_samples} values on a side",
    )


def relative_total(
    column: str,
    canary_total: float,
    baseline_total: float,
    threshold: float,
    n_canary: int,
    n_baseline: int,
    min_samples: int = 1,
) -> MetricOutcome:
    detail = {"canary_total": canary_total, "baseline_total": baseline_total}
    outcome = partial(
        MetricOutcome, column, Statistic.RELATIVE_TOTAL.value, threshold=threshold,
        n_canary=n_canary, n_baseline=n_baseline, detail=detail,
    )  # fmt: skip
    if n_baseline < min_samples:
        return outcome(Verdict.INCONCLUSIVE, None, note=f"fewer than {min_samples} baseline values")
    if baseline_total == 0:
        if canary_total == 0:
            return outcome(Verdict.INCONCLUSIVE, None, note="both totals are zero")
        return outcome(Verdict.FAIL, math.inf, note="the baseline's total is zero")
    rel = (canary_total - baseline_total) / abs(baseline_total)
    return outcome(Verdict.FAIL if abs(rel) > threshold else Verdict.PASS, rel)


def mann_whitney(
    column: str, canary: Sequence[float], baseline: Sequence[float], threshold: float, min_samples: int = 3
) -> MetricOutcome:
    few = _too_few(column, Statistic.MANN_WHITNEY_U, threshold, len(canary), len(baseline), min_samples)
    if few is not None:
        return few
    from scipy.stats import mannwhitneyu  # on first use (module docstring)

    res = mannwhitneyu(list(canary), list(baseline), alternative="two-sided")
    p = float(res.pvalue)
    p = 1.0 if math.isnan(p) else p  # identical constant samples: no evidence of a difference
    verdict = Verdict.FAIL if p < threshold else Verdict.PASS
    return MetricOutcome(
        column,
        Statistic.MANN_WHITNEY_U.value,
        verdict,
        p,
        threshold,
        len(canary),
        len(baseline),
        {"u": float(res.statistic), "p_value": p},
    )


def kolmogorov_smirnov(
    column: str,
    canary: Sequence[float],
    baseline: Sequence[float],
    threshold: float,
    min_samples: int = 3,
    criterion: KsCriterion = KsCriterion.P_VALUE,
) -> MetricOutcome:
    few = _too_few(column, Statistic.KOLMOGOROV_SMIRNOV, threshold, len(canary), len(baseline), min_samples)
    if few is not None:
        return few
    from scipy.stats import ks_2samp

    res = ks_2samp(list(canary), list(baseline))
    d, p = float(res.statistic), float(res.pvalue)
    p = 1.0 if math.isnan(p) else p
    if criterion is KsCriterion.D:
        value, failed = d, d > threshold
    else:
        value, failed = p, p < threshold
    return MetricOutcome(
        column,
        Statistic.KOLMOGOROV_SMIRNOV.value,
        Verdict.FAIL if failed else Verdict.PASS,
        value,
        threshold,
        len(canary),
        len(baseline),
        {"criterion": criterion.value, "d": d, "p_value": p},
    )


def quantile_shift(
    column: str,
    canary: Sequence[float],
    baseline: Sequence[float],
    threshold: float,
    min_samples: int = 3,
    quantile: float = 0.95,
) -> MetricOutcome:
    few = _too_few(column, Statistic.QUANTILE_SHIFT, threshold, len(canary), len(baseline), min_samples)
    if few is not None:
        return few
    from scipy.stats import scoreatpercentile

    qc = float(scoreatpercentile(list(canary), quantile * 100))  # linear interpolation
    qb = float(scoreatpercentile(list(baseline), quantile * 100))
    if qb == 0:
        shift = 0.0 if qc == 0 else math.inf
    else:
        shift = (qc - qb) / abs(qb)
    verdict = Verdict.FAIL if abs(shift) > threshold else Verdict.PASS
    return MetricOutcome(
        column,
        Statistic.QUANTILE_SHIFT.value,
        verdict,
        shift,
        threshold,
        len(canary),
        len(baseline),
        {"quantile": quantile, "canary_quantile": qc, "baseline_quantile": qb},
    )
