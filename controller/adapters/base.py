"""The adapter boundary: a Protocol every backend adapter implements, plus call accounting.

``observe`` returns live resources for the names asked (absent names are simply missing from the
result) in as few backend round trips as the backend allows — ideally one per kind per pass.
``apply`` performs one action idempotently: applying an action whose effect is already present
changes nothing and returns ``changed=False``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from controller.plan.actions import Action
from controller.plan.resources import Resource, ResourceKind


class ApplyResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    action_id: str
    changed: bool
    message: str = ""


_COUNT_LOCK = threading.Lock()


@dataclass
class CallStats:
    """Backend round trips, by operation name (for `bench/` and the no-op-pass budget)."""

    calls: dict[str, int] = field(default_factory=dict)

    def count(self, op: str, n: int = 1) -> None:
        with _COUNT_LOCK:  # a snapshot's prefetch counts from several threads at once
            self.calls[op] = self.calls.get(op, 0) + n

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def reset(self) -> None:
        self.calls.clear()


@runtime_checkable
class Adapter(Protocol):
    kinds: frozenset[ResourceKind]
    stats: CallStats

    def observe(self, kind: ResourceKind, names: Sequence[str]) -> dict[str, Resource]:
        """Live state of the named resources of ``kind`` (missing ones are absent)."""
        ...

    def apply(self, action: Action) -> ApplyResult:
        """Apply one action; idempotent."""
        ...
