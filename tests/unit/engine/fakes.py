"""In-memory fakes for unit tests of engine logic (never used by integration tests): a backend
adapter, and a git source over a directory of release manifests for the ``Controller``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
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


def write_repo(root: Path, names: list[str]) -> Path:
    """``root/releases`` holding exactly one minimal release manifest per name (others removed)."""
    (root / "releases").mkdir(parents=True, exist_ok=True)
    for old in (root / "releases").glob("*.yaml"):
        old.unlink()
    for n in names:
        (root / "releases" / f"{n}.yaml").write_text(
            "apiVersion: pipectl.dev/v1alpha1\nkind: PipelineRelease\n"
            f"metadata:\n  name: {n}\nspec:\n  version: 0.1.0\n  rollout:\n    stages: [dev]\n"
        )
    return root


@dataclass
class FakeSource:
    """``GitSource`` as the controller uses it: one pinned commit, checked out at ``root``."""

    root: Path
    repo: str = "fake"
    commit: str = "c0ffee"

    def resolve(self) -> str:
        return self.commit

    def checkout(self, commit: str | None) -> Any:
        return type("Checkout", (), {"root": self.root})()
