"""Labelled Prometheus series kept as plain values, for the metrics that grow with the releases.

``prometheus_client``'s ``Counter``/``Gauge``/``Histogram`` make one child object per label set,
with its own lock, value objects and a copy of the metric's name and documentation: about 1 KB
for a counter and 2 KB for a histogram. The controller creates several per release and stage (at
0, so alerts on ``increase()`` see the first error), which came to ~16 MB at 1,000 releases, most
of the gap to the scale issue's 200 MB. Here a series is one dict entry (label tuple → float, or
a short list of bucket counts for a histogram) and the families are built when ``/metrics`` is
scraped, through the client's documented custom-collector interface, so the exposition format is
the client's own. Counters do not export ``_created`` samples (no rule or dashboard reads them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Generic, TypeVar, cast

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

# the client's own spelling of a bucket bound (its ``le`` label), untyped upstream
_le = cast(Callable[[float], str], floatToGoString)

__all__ = ["CounterSeries", "GaugeSeries", "HistogramSeries"]

Labels = tuple[str, ...]
V = TypeVar("V")


class _Series(Collector, Generic[V]):
    """A metric's series by label values, registered in ``registry``; subclasses build families."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self.name, self.documentation = name, documentation
        self._labelnames = tuple(labelnames)
        self._lock = threading.Lock()
        self._values: dict[Labels, V] = {}
        registry.register(self)

    def _key(self, values: Sequence[str]) -> Labels:
        if len(values) != len(self._labelnames):
            raise ValueError(f"{self.name}: {len(values)} label values for labels {self._labelnames}")
        return tuple(str(v) for v in values)

    def _family(self) -> Metric:
        raise NotImplementedError

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def remove(self, *values: str) -> None:
        with self._lock:
            self._values.pop(self._key(values), None)

    def remove_by_labels(self, labels: dict[str, str]) -> None:
        """Drop every series whose labels include ``labels`` (e.g. ``{"release": name}``)."""
        where = [(self._labelnames.index(k), v) for k, v in labels.items()]
        with self._lock:
            for key in [k for k in self._values if all(k[i] == v for i, v in where)]:
                del self._values[key]

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


class _ScalarSeries(_Series[float]):
    """One number per series."""

    def _family(self) -> CounterMetricFamily | GaugeMetricFamily:
        raise NotImplementedError

    def touch(self, *values: str) -> None:
        """Create the series at 0 unless it exists."""
        key = self._key(values)
        with self._lock:
            self._values.setdefault(key, 0.0)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        with self._lock:
            items = list(self._values.items())
        for key, value in items:
            family.add_metric(key, value)
        yield family


class CounterSeries(_ScalarSeries):
    """Monotonic counters."""

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self._labelnames)

    def inc(self, *values: str, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: counters only go up ({amount})")
        key = self._key(values)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class GaugeSeries(_ScalarSeries):
    """Values that go up and down; a series exists once set."""

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.documentation, labels=self._labelnames)

    def set(self, *values: str, value: float) -> None:
        key = self._key(values)
        with self._lock:
            self._values[key] = float(value)


class HistogramSeries(_Series[list[float]]):
    """Observations in fixed buckets: per series, one count per bucket (the last is ``+Inf``) and
    the sum, as one list of floats."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        buckets: Sequence[float],
    ) -> None:
        self._bounds = tuple(sorted(float(b) for b in buckets))
        self._les = [_le(b) for b in self._bounds] + ["+Inf"]
        super().__init__(name, documentation, labelnames, registry)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self._labelnames)

    def observe(self, *values: str, amount: float) -> None:
        key = self._key(values)
        slot = next((i for i, b in enumerate(self._bounds) if amount <= b), len(self._bounds))
        with self._lock:
            counts = self._values.get(key)
            if counts is None:
                counts = self._values[key] = [0.0] * (len(self._bounds) + 2)
            counts[slot] += 1
            counts[-1] += amount

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        with self._lock:
            items = [(k, list(v)) for k, v in self._values.items()]
        for key, counts in items:
            cumulative, total = [], 0.0
            for le, count in zip(self._les, counts[:-1], strict=True):
                total += count
                cumulative.append((le, total))
            family.add_metric(key, cumulative, sum_value=counts[-1])
        yield family
