"""Diff rule for Spark streaming jobs (filled in by the Spark runner work)."""

from __future__ import annotations

from controller.plan.actions import Action, DiffContext
from controller.plan.resources import StreamingJobResource


def diff_job(
    desired: StreamingJobResource | None, live: StreamingJobResource | None, ctx: DiffContext
) -> list[Action]:
    raise NotImplementedError
