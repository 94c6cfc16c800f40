"""The compact series (controller/obs/series.py) expose exactly what prometheus_client's own
Counter, Gauge and Histogram expose for the same calls, ``_created`` samples aside."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from controller.obs.series import CounterSeries, GaugeSeries, HistogramSeries

BUCKETS = (0.05, 0.5, 1.0, 10.0, 600.0)


def _text(registry: CollectorRegistry) -> list[str]:
    return [
        line for line in generate_latest(registry).decode().splitlines() if "_created" not in line
    ]


def test_counter_gauge_and_histogram_expose_what_the_client_does() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    c = CounterSeries("t_errors_total", "Errors.", ["release", "reason"], ours)
    g = GaugeSeries("t_drift", "Drift.", ["release", "stage"], ours)
    h = HistogramSeries("t_seconds", "Pass time.", ["release"], ours, BUCKETS)
    rc = Counter("t_errors_total", "Errors.", ["release", "reason"], registry=theirs)
    rg = Gauge("t_drift", "Drift.", ["release", "stage"], registry=theirs)
    rh = Histogram("t_seconds", "Pass time.", ["release"], buckets=BUCKETS, registry=theirs)

    c.touch("a", "ApplyFailed")
    rc.labels("a", "ApplyFailed")
    for _ in range(3):
        c.inc("b", "RollbackFailed")
        rc.labels("b", "RollbackFailed").inc()
    c.inc("b", "RollbackFailed", amount=2.5)
    rc.labels("b", "RollbackFailed").inc(2.5)
    g.touch("a", "dev")
    rg.labels("a", "dev")
    g.set("a", "prod", value=7)
    rg.labels("a", "prod").set(7)
    for seconds in (0.01, 0.05, 0.7, 3.0, 900.0):
        h.observe("a", amount=seconds)
        rh.labels("a").observe(seconds)

    assert _text(ours) == _text(theirs)
    assert ours.get_sample_value("t_errors_total", {"release": "b", "reason": "RollbackFailed"}) == 5.5
    assert ours.get_sample_value("t_seconds_bucket", {"release": "a", "le": "0.05"}) == 2
    assert ours.get_sample_value("t_seconds_bucket", {"release": "a", "le": "+Inf"}) == 5


def test_series_are_removed_one_by_one_by_label_or_all_at_once() -> None:
    reg = CollectorRegistry()
    g = GaugeSeries("t_info", "Info.", ["release", "stage"], reg)
    for release in ("a", "b"):
        for stage in ("dev", "prod"):
            g.set(release, stage, value=1)
    g.remove("a", "dev")
    assert reg.get_sample_value("t_info", {"release": "a", "stage": "dev"}) is None
    g.remove_by_labels({"release": "b"})
    assert [s.labels for f in reg.collect() for s in f.samples] == [{"release": "a", "stage": "prod"}]
    g.clear()
    assert [s for f in reg.collect() for s in f.samples] == []


def test_wrong_label_counts_and_negative_increments_are_refused() -> None:
    reg = CollectorRegistry()
    c = CounterSeries("t_total", "T.", ["release"], reg)
    with pytest.raises(ValueError, match="label values"):
        c.inc("a", "b")
    with pytest.raises(ValueError, match="only go up"):
        c.inc("a", amount=-1)
