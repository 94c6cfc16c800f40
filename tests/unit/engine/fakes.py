"""An in-memory backend for unit tests of engine logic (never used by integration tests)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from controller.adapters.base import ApplyResult, CallStats
from controller.model.errors import PermanentBackendError
from controller.plan.actions import Action, Op
from controller.plan.resources import Resource, ResourceKind


class MemoryAdapter:
    def __init__(self, kinds: set[ResourceKind], fail_on: set[str] | None = None):
        self.kinds = frozenset(kinds)
        self.stats = CallStats()
        self.live: dict[str, Any] = {}
        self.applied: list[str] = []
        self.fail_on = fail_on or set()

    def observe(self, kind: ResourceKind, names: Sequence[str]) -> dict[str, Resource]:
        self.stats.count("observe")
        return {n: self.live[n] for n in names if n in self.live and self.live[n].kind == kind}

    def apply(self, action: Action) -> ApplyResult:
        self.stats.count("apply")
        if action.name in self.fail_on:
            raise PermanentBackendError("memory", f"cannot apply {action.name}")
        self.applied.append(action.id)
        if action.op is Op.DELETE:
            self.live.pop(action.name, None)
        else:
            assert action.desired is not None
            self.live[action.name] = action.desired
        return ApplyResult(action_id=action.id, changed=True)
