"""Diff rules for Hive databases, tables and views (filled in by the Hive adapter work)."""

from __future__ import annotations

from controller.plan.actions import Action, DiffContext
from controller.plan.resources import DatabaseResource, TableResource, ViewResource


def diff_database(desired: DatabaseResource | None, live: DatabaseResource | None, ctx: DiffContext) -> list[Action]:
    raise NotImplementedError


def diff_table(desired: TableResource | None, live: TableResource | None, ctx: DiffContext) -> list[Action]:
    raise NotImplementedError


def diff_view(desired: ViewResource | None, live: ViewResource | None, ctx: DiffContext) -> list[Action]:
    raise NotImplementedError
