"""The canary statistics: fixed cases and hypothesis properties (identical samples pass; a spread
change with equal totals fails the distribution statistics but not relativeTotal)."""

from __future__ import annotations

import math
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.model.analysis import CanaryMetric, KsCriterion, Statistic
from controller.model.reasons import Verdict
from controller.rollout.statistics import (
    judge,
    kolmogorov_smirnov,
    mann_whitney,
    quantile_shift,
    relative_total,
    threshold_of,
)

values = st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=3, max_size=60)
ALL = [
    CanaryMetric(column="v", statistic=Statistic.RELATIVE_TOTAL),
    CanaryMetric(column="v", statistic=Statistic.MANN_WHITNEY_U),
    CanaryMetric(column="v", statistic=Statistic.KOLMOGOROV_SMIRNOV),
    CanaryMetric(column="v", statistic=Statistic.KOLMOGOROV_SMIRNOV, criterion=KsCriterion.D, threshold=0.1),
    CanaryMetric(column="v", statistic=Statistic.QUANTILE_SHIFT, quantile=0.95),
]


@settings(max_examples=60, deadline=None)
@given(values)
def test_identical_samples_always_pass(xs: list[float]) -> None:
    for m in ALL:
        out = judge(m, threshold_of(m, 0.02, 0.01), xs, list(reversed(xs)))
        # relativeTotal of a zero total is inconclusive; everything else passes
        assert out.verdict in (Verdict.PASS, Verdict.INCONCLUSIVE), (m.statistic, out)
        if m.statistic is not Statistic.RELATIVE_TOTAL:
            assert out.verdict is Verdict.PASS, (m.statistic, out)
        elif math.fsum(xs) != 0:
            assert out.verdict is Verdict.PASS and out.value == 0.0


@settings(max_examples=40, deadline=None)
@given(st.floats(min_value=1, max_value=1e4), st.floats(min_value=0.2, max_value=0.9), st.integers(60, 200))
def test_a_spread_change_with_equal_totals_fails_the_distribution_statistic(
    level: float, spread: float, n: int
) -> None:
    baseline = [level] * n
    lo, hi = level * (1 - spread), level * (1 + spread)
    canary = [lo, hi] * (n // 2) + [level] * (n % 2)
    totals = judge(ALL[0], 0.02, canary, baseline)
    assert totals.verdict is Verdict.PASS and abs(totals.value or 0) < 1e-9
    ks = judge(ALL[2], 0.01, canary, baseline)
    assert ks.verdict is Verdict.FAIL and ks.detail["d"] >= 0.49
    assert judge(ALL[3], 0.1, canary, baseline).verdict is Verdict.FAIL
    assert judge(ALL[4], 0.02, canary, baseline).verdict is Verdict.FAIL


@settings(max_examples=40, deadline=None)
@given(values, st.randoms(use_true_random=False))
def test_results_do_not_depend_on_row_order(xs: list[float], rnd: object) -> None:
    ys = [x * 1.5 + 3 for x in xs]
    shuffled = list(ys)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    for m in ALL:
        a = judge(m, threshold_of(m, 0.02, 0.01), xs, ys)
        b = judge(m, threshold_of(m, 0.02, 0.01), xs, shuffled)
        assert a.verdict is b.verdict
        assert a.value == b.value or (
            a.value is not None and b.value is not None and math.isclose(a.value, b.value)
        )


def test_relative_total_fixed_cases() -> None:
    out = relative_total("samples", 95.0, 100.0, 0.02, 10, 10)
    assert out.verdict is Verdict.FAIL and out.value is not None and math.isclose(out.value, -0.05)
    assert out.evidence() == {
        "column": "samples",
        "statistic": "relativeTotal",
        "verdict": "fail",
        "value": out.value,
        "threshold": 0.02,
        "samples": {"canary": 10, "baseline": 10},
        "canary_total": 95.0,
        "baseline_total": 100.0,
    }
    assert relative_total("s", 99.0, 100.0, 0.02, 10, 10).verdict is Verdict.PASS
    assert relative_total("s", 5.0, 0.0, 0.02, 10, 10).verdict is Verdict.FAIL
    assert relative_total("s", 0.0, 0.0, 0.02, 10, 10).verdict is Verdict.INCONCLUSIVE
    # a canary that lost everything is caught; too few baseline values is not judged
    assert relative_total("s", 0.0, 100.0, 0.02, 0, 10, min_samples=3).verdict is Verdict.FAIL
    assert relative_total("s", 100.0, 100.0, 0.02, 10, 2, min_samples=3).verdict is Verdict.INCONCLUSIVE


def test_too_few_values_are_inconclusive() -> None:
    for fn in (mann_whitney, kolmogorov_smirnov, quantile_shift):
        out = fn("v", [1.0, 2.0], [1.0, 2.0, 3.0], 0.01, 3)
        assert out.verdict is Verdict.INCONCLUSIVE
        assert out.evidence()["note"] == "fewer than 3 values on a side"
        assert out.evidence()["samples"] == {"canary": 2, "baseline": 3}


def test_mann_whitney_and_quantile_shift_on_a_shift() -> None:
    base = [float(i) for i in range(50)]
    mw = mann_whitney("v", [x + 100 for x in base], base, 0.01)
    assert mw.verdict is Verdict.FAIL and mw.detail["u"] == 2500.0
    q = quantile_shift("latency_ms", [x * 1.2 for x in base], base, 0.1, quantile=0.95)
    assert q.verdict is Verdict.FAIL and q.value is not None and math.isclose(q.value, 0.2)
    assert q.detail["baseline_quantile"] == 46.55
    assert quantile_shift("v", [0.0] * 5, [0.0] * 5, 0.1).value == 0.0
    assert quantile_shift("v", [1.0] * 5, [0.0] * 5, 0.1).verdict is Verdict.FAIL


def test_kolmogorov_smirnov_criteria() -> None:
    base = [float(i) for i in range(100)]
    out = kolmogorov_smirnov("v", [x + 30 for x in base], base, 0.25, criterion=KsCriterion.D)
    assert out.verdict is Verdict.FAIL and out.value == 0.3 and out.detail["criterion"] == "d"
    out = kolmogorov_smirnov("v", [x + 30 for x in base], base, 0.35, criterion=KsCriterion.D)
    assert out.verdict is Verdict.PASS
    out = kolmogorov_smirnov("v", [x + 30 for x in base], base, 0.01)
    assert out.verdict is Verdict.FAIL and out.value == out.detail["p_value"] < 0.01


def test_default_thresholds() -> None:
    assert threshold_of(ALL[0], 0.05, 0.001) == 0.05
    assert threshold_of(ALL[1], 0.05, 0.001) == 0.001
    assert threshold_of(ALL[3], 0.05, 0.001) == 0.1
    assert threshold_of(ALL[4], 0.05, 0.001) == 0.05


def test_scipy_is_loaded_only_by_a_statistic_that_needs_it() -> None:
    # ~70 MiB: a controller whose gates never compute a distribution statistic does without it
    code = (
        "import sys\n"
        "import controller.cli.run, controller.wiring, controller.rollout.gates\n"
        "import controller.rollout.statistics\n"
        "assert 'scipy' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
