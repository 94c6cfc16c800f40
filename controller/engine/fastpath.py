"""The no-op fast path: a release-stage whose inputs did not change since its last converged no-op
pass skips planning (issue #17, point 2).

The inputs are a digest of everything ``StageOps.converge`` plans from besides live state (the
manifest, the stage and its environment, the rollout inputs derived from the release's status —
serving version, view segments, start offsets —, the commit, the upstream releases, the jobs to
stop, the inventory of what the stage owns) plus a digest of the live state of the resources that
pass desired. On a hit, live state is still read (from the pass-wide snapshot) and compared: any
drift, or a write of this pass, plans again. Only a plan without a single action is remembered,
and of its desired resources only what reading their live state takes (``Ref``: kind and name;
at 1,000 releases the whole models were ~9 MiB held between passes).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from pydantic import BaseModel

from controller.plan.actions import Plan


def _canon(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, Mapping):
        return {str(k): _canon(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_canon(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    return value if isinstance(value, str | int | float | bool | None) else repr(value)


def digest(*parts: Any) -> str:
    """A stable digest of pydantic models, mappings, sequences and scalars."""
    raw = json.dumps([_canon(p) for p in parts], sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(raw.encode()).hexdigest()


def live_digest(live: Mapping[tuple[str, str], Any]) -> str:
    return digest({f"{k}/{n}": v for (k, n), v in live.items()})


class Ref(NamedTuple):
    """A desired resource as live state is read for it (``StageOps.observe_adapters``)."""

    kind: str
    name: str


@dataclass(frozen=True)
class NoopKey:
    """What a converged no-op pass saw: its inputs' digest, its desired resources, their live digest."""

    inputs: str
    desired: tuple[Ref, ...]
    live: str


class FastPath:
    """(release, stage) → the last converged no-op pass's ``NoopKey`` and plan; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._memo: dict[tuple[str, str], tuple[NoopKey, Plan]] = {}
        self.hits = 0

    def candidate(self, release: str, stage: str, inputs: str) -> NoopKey | None:
        """The remembered pass when its inputs equal ``inputs`` (live state still to compare)."""
        with self._lock:
            got = self._memo.get((release, stage))
        return got[0] if got is not None and got[0].inputs == inputs else None

    def confirm(self, release: str, stage: str, key: NoopKey, live: str) -> Plan | None:
        """The remembered plan when live state is what it was; else forget the pass."""
        with self._lock:
            got = self._memo.get((release, stage))
            if got is None or got[0] != key:
                return None
            if key.live != live:
                del self._memo[(release, stage)]
                return None
            self.hits += 1
            return got[1]

    def remember(
        self, release: str, stage: str, inputs: str, desired: Sequence[Any], live: str, plan: Plan
    ) -> None:
        with self._lock:
            if plan.actions:
                self._memo.pop((release, stage), None)
            else:
                refs = tuple(Ref(str(d.kind), d.name) for d in desired)
                self._memo[(release, stage)] = (NoopKey(inputs, refs, live), plan)

    def forget(self, release: str, stage: str) -> None:
        with self._lock:
            self._memo.pop((release, stage), None)
