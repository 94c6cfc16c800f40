"""What the engine holds for one stage: its adapters by kind plus the backends gates read from.

Built by ``controller.wiring`` (the composition root). The reconciler, stage operations and gates
see a stage only through the narrow Protocols here (``StagePorts``): plan actions go through
``Adapter`` (observe + apply one change), and the few reads the rollout needs besides — a job's
latest progress, Kafka offsets, a Presto query, a PromQL query — through ``JobsPort``,
``OffsetsPort``, ``SqlPort`` and ``MetricsPort``. Unit tests hand the real ``Reconciler``
in-memory implementations of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from controller.adapters.airflow import AirflowAdapter
from controller.adapters.base import Adapter, CallStats
from controller.adapters.hive import HiveAdapter
from controller.adapters.kafka import KafkaAdapter
from controller.adapters.presto import PrestoClient
from controller.adapters.prometheus import PrometheusClient, Sample
from controller.adapters.spark import JobProgress, SparkAdapter
from controller.adapters.transforms import TransformAdapter
from controller.plan.desired import StageContext
from controller.plan.resources import Resource, ResourceKind
from controller.rollout.context import ProgressView

BACKEND_NAMES = ("kafka", "hive", "presto", "airflow", "spark")


@dataclass
class StageBackends:
    adapters: dict[ResourceKind, Adapter]
    kafka: KafkaAdapter
    hive: HiveAdapter
    presto: PrestoClient
    airflow: AirflowAdapter
    spark: SparkAdapter
    transforms: TransformAdapter | None = None
    prometheus: PrometheusClient | None = None
    """The Environment's ``prometheus`` endpoint, for canaryComparison providers."""

    def calls(self) -> dict[str, int]:
        return {n: getattr(self, n).stats.total for n in BACKEND_NAMES}

    def call_detail(self) -> dict[str, dict[str, int]]:
        return {n: dict(getattr(self, n).stats.calls) for n in BACKEND_NAMES}

    def reset_calls(self) -> None:
        for n in BACKEND_NAMES:
            getattr(self, n).stats.reset()


@runtime_checkable
class BatchObserver(Protocol):
    """An adapter serving several kinds that reads them in one go (Hive: tables and views)."""

    def observe_kinds(
        self, requests: Mapping[ResourceKind, Sequence[str]]
    ) -> Mapping[ResourceKind, Mapping[str, Resource]]: ...


class OffsetsPort(Protocol):
    stats: CallStats

    def end_offsets(self, topic: str) -> dict[int, int]: ...

    def offsets_for_times(self, topic: str, ts_ms: int) -> dict[int, int]: ...

    def committed_offsets(self, group: str) -> dict[str, dict[int, int]]: ...


class JobsPort(Protocol):
    stats: CallStats

    def progress(self, name: str) -> JobProgress | None: ...

    def observe(self, kind: ResourceKind, names: Sequence[str]) -> dict[str, Resource]: ...


class SqlPort(Protocol):
    stats: CallStats
    catalog: str

    def query(self, sql: str, *, op: str = "query") -> list[tuple[Any, ...]]: ...


class MetricsPort(Protocol):
    stats: CallStats

    def query(self, promql: str, at: datetime | None = None) -> list[Sample]: ...


class StagePorts(Protocol):
    """One stage's backends as the rollout engine sees them."""

    @property
    def adapters(self) -> Mapping[ResourceKind, Adapter]: ...

    @property
    def kafka(self) -> OffsetsPort: ...

    @property
    def spark(self) -> JobsPort: ...

    @property
    def presto(self) -> SqlPort: ...

    @property
    def prometheus(self) -> MetricsPort | None:
        """None when the stage's Environment sets no ``prometheus`` endpoint."""
        ...


def progress_view(p: JobProgress | None) -> ProgressView | None:
    """A Spark job's progress as the pure rollout code reads it (epoch-0 watermark = none yet)."""
    if p is None:
        return None
    wm = None
    if p.watermark:
        wm = datetime.fromisoformat(p.watermark.replace("Z", "+00:00"))
        if wm.year <= 1970:
            wm = None
    return ProgressView(
        batch_id=p.batch_id,
        input_rows_per_second=p.input_rows_per_second,
        processed_rows_per_second=p.processed_rows_per_second,
        batch_duration_ms=p.batch_duration_ms,
        source_end_offsets=p.end_offsets,
        watermark=wm,
        timestamp=p.timestamp if p.timestamp.tzinfo else p.timestamp.replace(tzinfo=UTC),
        num_input_rows=p.num_input_rows,
        undecodable_records=p.undecodable_records,
    )


BackendsFactory = Callable[[StageContext, Path | None], StagePorts]
