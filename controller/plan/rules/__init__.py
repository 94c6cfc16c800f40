"""Per-kind diff rules. Each module exposes ``diff(desired, live, ctx) -> list[Action]``.

A rule is pure: it compares one desired resource with its live counterpart (either may be None)
and returns the actions needed, ``[]`` when converged. Refusals are actions with ``Op.REFUSE`` and
a ``reason_code`` from ``controller.model.reasons.Reason``; nothing is half-planned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from controller.plan.actions import Action, DiffContext
from controller.plan.resources import ResourceKind
from controller.plan.rules import airflow, hive, kafka, spark, transform

DiffRule = Callable[[Any, Any, DiffContext], list[Action]]

RULES: dict[ResourceKind, DiffRule] = {
    ResourceKind.DATABASE: hive.diff_database,
    ResourceKind.TOPIC: kafka.diff_topic,
    ResourceKind.TABLE: hive.diff_table,
    ResourceKind.VIEW: hive.diff_view,
    ResourceKind.DAG: airflow.diff_dag,
    ResourceKind.STREAMING_JOB: spark.diff_job,
    ResourceKind.TRANSFORM: transform.diff_transform,
}
