"""The producer/consumer order a schema change needs, as the plan's reasons.

When a release changes a schema that a topic of it carries, the compatibility level says who must
move first (``schema_compat.ordering``): BACKWARD — consumers first (only the new schema reads
both versions); FORWARD — producers first (old readers read new data, new readers may fail on old
records); FULL — either; NONE — no order is safe. ``schema_changes`` finds the changed schemas
(content compared as in the registry, ``schema_registry.identity``) against the texts of the
newest earlier promoted version, the ones the schemaCompatibility gate compares with;
``annotate`` adds one note per change to the plan and names the order on the action of every
streaming job of the release that reads such a topic.

Shown, not enforced: pipectl deploys consumers only (a streaming job's sinks are tables; producers
run outside pipectl), so no plan orders a producer action after a consumer action. Under
BACKWARD the plan itself is the consumers-first step; under FORWARD the note says the producers
must write the new version before this plan's consumers are updated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controller.model.identifiers import semver_key
from controller.model.manifest import Compatibility, PipelineRelease
from controller.plan.actions import Plan
from controller.plan.resources import ResourceKind
from controller.rollout.schema_compat import Ordering, ordering
from controller.rollout.schema_registry import identity


@dataclass(frozen=True)
class SchemaChange:
    schema: str
    compatibility: Compatibility
    ordering: Ordering
    topics: tuple[str, ...]
    """The release's topics that carry it (value or key)."""
    consumers: tuple[str, ...]
    """The release's streaming jobs that read one of those topics (logical names)."""


def schema_changes(
    rel: PipelineRelease, now: Mapping[str, str], before: Mapping[str, str]
) -> list[SchemaChange]:
    """Schemas of ``rel`` whose text ``now`` differs from ``before`` (schema name → text); a
    schema without an earlier text is new, not a change."""
    out = []
    for s in rel.spec.schemas:
        new, old = now.get(s.name), before.get(s.name)
        if new is None or old is None or identity(s.format, new) == identity(s.format, old):
            continue
        topics = tuple(sorted(t.name for t in rel.spec.topics if s.name in (t.value_schema, t.key_schema)))
        consumers = tuple(
            sorted(j.name for j in rel.spec.streaming_jobs if any(src.topic in topics for src in j.sources))
        )
        out.append(SchemaChange(s.name, s.compatibility, ordering(s.compatibility), topics, consumers))
    return out


def earlier_texts(history: Mapping[str, Mapping[str, str]], version: str) -> dict[str, str]:
    """Schema name → its text in the newest promoted version before ``version`` (``history``:
    schema name → version → text, as ``ReleaseHistory.schemas``)."""
    cur = semver_key(version)
    out = {}
    for name, by_version in history.items():
        earlier = sorted((v for v in by_version if semver_key(v) < cur), key=semver_key)
        if earlier:
            out[name] = by_version[earlier[-1]]
    return out


def note(c: SchemaChange) -> str:
    """The plan's note for one change."""
    head = f"schema {c.schema} changes under {c.compatibility.value}"
    where = ", ".join(c.topics) or "no topic of this release"
    jobs = ", ".join(c.consumers) or "no consumer in this release"
    if c.ordering == "consumers-first":
        return (
            f"{head}: consumers first — this plan deploys the consumers of {where} ({jobs}); "
            "producers may write the new version only once the consumers run it at every stage they read"
        )
    if c.ordering == "producers-first":
        return (
            f"{head}: producers first — every producer of {where} must write the new version "
            f"before this plan's consumers ({jobs}) are updated"
        )
    if c.compatibility is Compatibility.NONE:
        return f"{head}: no order is safe (not checked) — use a new topic, or stop the producers of {where}"
    return f"{head}: producers and consumers of {where} in either order"


def annotate(plan: Plan, changes: list[SchemaChange], physical: Mapping[str, str]) -> Plan:
    """``plan`` with a note per change and the order on each consumer's streaming-job action
    (``physical``: the job's logical name → its name in the plan at this stage)."""
    if not changes:
        return plan
    order: dict[str, list[str]] = {}
    for c in changes:
        for job in c.consumers:
            if job in physical:
                order.setdefault(physical[job], []).append(
                    f"{c.ordering} ({c.schema} {c.compatibility.value})"
                )
    actions = [
        a.model_copy(update={"reason": f"{a.reason}; schema order: {', '.join(order[a.name])}"})
        if a.kind is ResourceKind.STREAMING_JOB and a.name in order
        else a
        for a in plan.actions
    ]
    return plan.model_copy(update={"actions": actions, "notes": [*plan.notes, *(note(c) for c in changes)]})
