"""What a release owns at a stage, and what it owned but declares no more: prune candidates (pure).

Not every backend records an owner on the object (Kafka topics and Hive views carry none), so the
engine keeps an inventory per (release, stage) in the state store, as Flux's kustomize-controller
keeps one in status: every resource a converge of the release declared there. An inventory entry
the release no longer declares is a prune candidate once it is seen live — and, where the backend
records an owner (a table's ``pipectl.release`` property, a DAG's ``release:`` tag, a transform's
record), only while that owner is still this release (``owned_by``). The plan shows a candidate as
a destructive delete awaiting approval (``controller.plan.approvals``).

Entries map the physical key ``Kind/name`` to a logical key ``Kind/logical``: a blue/green table
gets one physical table per version (``<table>__v1_1_0``) and the serving view keeps reading the
earlier versions' tables, so a table is a candidate only when its *logical* table left the
manifest. Not inventoried: databases (shared between releases), streaming jobs (the rollout starts
and stops them by version) and canary stages (their topics and tables are their target's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from controller.model.manifest import PipelineRelease
from controller.plan.desired import StageContext, physical_table
from controller.plan.resources import ResourceKind

PRUNABLE = frozenset(
    {ResourceKind.TOPIC, ResourceKind.TABLE, ResourceKind.VIEW, ResourceKind.DAG, ResourceKind.TRANSFORM}
)
OWNER_RECORDED = frozenset({ResourceKind.TABLE, ResourceKind.DAG, ResourceKind.TRANSFORM})
"""Kinds whose live objects say which release owns them."""


def key_of(kind: str, name: str) -> str:
    return f"{kind}/{name}"


def split_key(key: str) -> tuple[ResourceKind, str]:
    kind, _, name = key.partition("/")
    return ResourceKind(kind), name


def entries(rel: PipelineRelease, ctx: StageContext, desired: Sequence[Any]) -> dict[str, str]:
    """The inventory entries of ``desired`` (the resources ``rel`` declares at the stage)."""
    if ctx.is_canary:
        return {}
    logical_tables = {
        physical_table(ctx, rel, tb.name, rel.spec.version): tb.name for tb in rel.spec.tables
    }
    out: dict[str, str] = {}
    for d in desired:
        kind = ResourceKind(d.kind)
        if kind not in PRUNABLE:
            continue
        logical = logical_tables.get(d.name, d.name) if kind is ResourceKind.TABLE else d.name
        out[key_of(kind, d.name)] = key_of(kind, logical)
    return out


def leftovers(inventory: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """Keys of ``inventory`` whose logical resource ``current`` (this plan's entries) lacks."""
    declared = set(current.values())
    return sorted(k for k, logical in inventory.items() if k not in current and logical not in declared)


def owned_by(live: Any, release: str) -> bool:
    """Whether a live prune candidate may be deleted on ``release``'s behalf."""
    kind = ResourceKind(live.kind)
    if kind is ResourceKind.TRANSFORM and not getattr(live, "managed", True):
        return False
    if kind in OWNER_RECORDED:
        return live.owner is not None and live.owner.release == release
    return live.owner is None or live.owner.release == release
