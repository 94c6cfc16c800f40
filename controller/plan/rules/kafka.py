"""Diff rule for Kafka topics (filled in by the Kafka adapter work)."""

from __future__ import annotations

from controller.plan.actions import Action, DiffContext
from controller.plan.resources import TopicResource


def diff_topic(desired: TopicResource | None, live: TopicResource | None, ctx: DiffContext) -> list[Action]:
    raise NotImplementedError
