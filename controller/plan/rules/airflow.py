"""Diff rule for Airflow DAGs (filled in by the Airflow adapter work)."""

from __future__ import annotations

from controller.plan.actions import Action, DiffContext
from controller.plan.resources import DagResource


def diff_dag(desired: DagResource | None, live: DagResource | None, ctx: DiffContext) -> list[Action]:
    raise NotImplementedError
