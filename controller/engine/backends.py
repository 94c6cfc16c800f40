"""What the engine holds for one stage: its adapters by kind plus the backends gates read from.

Built by ``controller.wiring`` (the composition root); the engine only uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from controller.adapters.airflow import AirflowAdapter
from controller.adapters.base import Adapter
from controller.adapters.hive import HiveAdapter
from controller.adapters.kafka import KafkaAdapter
from controller.adapters.presto import PrestoClient
from controller.adapters.spark import SparkAdapter
from controller.adapters.transforms import TransformAdapter
from controller.plan.desired import StageContext
from controller.plan.resources import ResourceKind

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

    def calls(self) -> dict[str, int]:
        return {n: getattr(self, n).stats.total for n in BACKEND_NAMES}

    def call_detail(self) -> dict[str, dict[str, int]]:
        return {n: dict(getattr(self, n).stats.calls) for n in BACKEND_NAMES}

    def reset_calls(self) -> None:
        for n in BACKEND_NAMES:
            getattr(self, n).stats.reset()


BackendsFactory = Callable[[StageContext, Path | None], StageBackends]
