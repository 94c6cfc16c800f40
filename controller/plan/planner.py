"""Pair desired with live resources, run the per-kind diff rules, and order the actions.

Ordering follows gitops-engine's sync tasks: by kind order (dependencies first), then by name;
deletes go in reverse kind order after everything else. Destructive actions are settled against
the approvals in the ``DiffContext`` (``controller.plan.approvals``): awaiting approval, each says
how to approve it. The result is a ``Plan`` value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from controller.plan.actions import Action, DiffContext, Op, Plan, approval_hint
from controller.plan.approvals import settle
from controller.plan.resources import KIND_ORDER, ResourceKind
from controller.plan.rules import RULES


def diff_resources(
    desired: Sequence[Any],
    live: Mapping[tuple[str, str], Any],
    ctx: DiffContext,
    prune_candidates: Sequence[Any] = (),
) -> list[Action]:
    """Actions to converge ``live`` to ``desired``, ordered. ``live`` is keyed by (kind, name)."""
    actions: list[Action] = []
    for d in desired:
        rule = RULES[ResourceKind(d.kind)]
        have = live.get(d.key)
        actions.extend(settle(rule(d, have, ctx), d, have, ctx))
    desired_keys = {d.key for d in desired}
    for extra in prune_candidates:
        if extra.key not in desired_keys:
            actions.extend(settle(RULES[ResourceKind(extra.kind)](None, extra, ctx), None, extra, ctx))
    return order_actions(actions)


def order_actions(actions: Sequence[Action]) -> list[Action]:
    rank = {k: i for i, k in enumerate(KIND_ORDER)}

    def key(a: Action) -> tuple[int, int, str]:
        if a.op is Op.DELETE:
            return (1, -rank[a.kind], a.name)
        return (0, rank[a.kind], a.name)

    return sorted(actions, key=key)


def make_plan(
    release: str,
    version: str,
    stage: str,
    desired: Sequence[Any],
    live: Mapping[tuple[str, str], Any],
    now: datetime,
    ctx: DiffContext | None = None,
    commit: str | None = None,
    prune_candidates: Sequence[Any] = (),
) -> Plan:
    actions = [
        a.model_copy(update={"reason": f"{a.reason}; {approval_hint(release, stage, a.id)}"})
        if a.pending
        else a
        for a in diff_resources(desired, live, ctx or DiffContext(), prune_candidates)
    ]
    return Plan(
        release=release, version=version, stage=stage, commit=commit, generated_at=now, actions=actions
    )
