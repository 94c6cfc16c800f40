"""Step 3 of compiling a SQL transform (pure): what each ``ref('db.name')`` resolves to at a stage,
i.e. what is *served* there:

- a transform → its name at the stage (``<prefix>db.name``: every materialization is served under
  that name, see ``controller.adapters.transforms``);
- a view → the view;
- a table that a view of its release serves (``telemetry.host_metrics`` serves
  ``telemetry.host_metrics_1m`` in the example) → that serving view: the transform reads what
  dashboards read, and a blue/green switch repoints the view without changing the compiled SQL;
- any other table → its physical table for the serving version (``…__v1_0_0`` when a blue/green or
  canary job writes it, else the table itself).

Each input carries a digest of what it serves: the served physical table and the version of the
release that writes it (an upstream transform: its own materialization digest). A new upstream
version therefore changes the transform's digest although its SQL did not change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from controller.model import iceberg
from controller.model.manifest import PipelineRelease
from controller.plan.desired import (
    StageContext,
    physical_table,
    table_name,
    versioned_tables,
    vtag,
)
from controller.plan.resources import Column, ViewSegment
from controller.plan.transforms_model import CompiledTransform, Relation, short


class Resolver:
    """Resolves refs for one release at one stage (``ctx`` None: logical names, for validation)."""

    def __init__(
        self,
        release: PipelineRelease,
        upstream: Sequence[PipelineRelease],
        ctx: StageContext | None,
        serving_version: str | None,
        view_segments: Mapping[str, Sequence[ViewSegment]],
    ) -> None:
        self.release = release
        self.ctx = ctx
        self.serving_version = serving_version
        self.view_segments = view_segments
        self.entries: dict[str, tuple[str, PipelineRelease]] = {}
        deps = [u for u in upstream if u.name in release.spec.depends_on and u.name != release.name]
        for rel in [release, *deps]:  # the release's own names win
            for t in rel.spec.tables:
                self.entries.setdefault(t.name, ("table", rel))
            for v in rel.spec.views:
                self.entries.setdefault(v.name, ("view", rel))
            for x in rel.spec.transforms:
                self.entries.setdefault(x.name, ("transform", rel))
        # Compiling for a stage without the dependsOn releases' specs: a ref that is not the
        # release's own may be theirs; it resolves by name (schema unknown) instead of failing.
        missing = set(release.spec.depends_on) - {u.name for u in deps} - {release.name}
        self.lenient = ctx is not None and bool(missing)
        # Filled in topological order while compiling: outputs and digests of own transforms.
        self.compiled: dict[str, CompiledTransform] = {}

    def name(self, logical: str) -> str:
        return table_name(self.ctx, logical) if self.ctx else logical

    def _version(self, owner: PipelineRelease) -> str:
        if owner.name == self.release.name and self.serving_version:
            return self.serving_version
        return owner.spec.version

    def _physical(self, owner: PipelineRelease, table: str) -> str:
        return physical_table(self.ctx, owner, table, self._version(owner)) if self.ctx else table

    def known(self, logical: str) -> bool:
        return logical in self.entries or self.lenient

    def is_own_transform(self, logical: str) -> bool:
        what, owner = self.entries.get(logical, ("", self.release))
        return what == "transform" and owner.name == self.release.name

    def columns_of(self, logical: str) -> tuple[Column, ...] | None:
        what, owner = self.entries[logical]
        if what == "table":
            t = next(t for t in owner.spec.tables if t.name == logical)
            return tuple(Column(name=c.name, type=c.type) for c in [*t.columns, *t.partitioned_by])
        if what == "view":
            v = next(v for v in owner.spec.views if v.name == logical)
            return self.columns_of(v.table) if v.table in self.entries and v.table != logical else None
        if owner.name == self.release.name:
            done = self.compiled.get(logical)
            if done is None or not done.columns_known:
                return None
            return done.columns
        spec = next(x for x in owner.spec.transforms if x.name == logical)
        return tuple(Column(name=c.name, type=c.type) for c in spec.columns) if spec.columns else None

    def _served(self, owner: PipelineRelease, logical: str) -> tuple[str, str, str]:
        """(served physical relation, digest, label) of a table or transform of ``owner``."""
        what, _ = self.entries.get(logical, ("table", owner))
        version = self._version(owner)
        if what == "transform":
            done = self.compiled.get(logical) if owner.name == self.release.name else None
            if done is not None:
                return done.name, done.digest, short(done.digest)
            return self.name(logical), f"{self.name(logical)}@{version}", version
        served = self._physical(owner, logical)
        label = vtag(version) if logical in versioned_tables(owner) else version
        return served, f"{served}@{version}", label

    def resolve(self, logical: str) -> Relation:
        if logical not in self.entries:  # lenient: a relation of a dependsOn release not supplied
            name = self.name(logical)
            return Relation(logical, name, "external", f"{name}@unknown", "unknown")
        what, owner = self.entries[logical]
        own = owner.name == self.release.name
        if what == "transform":
            served, digest, label = self._served(owner, logical)
            kind: Literal["transform", "external"] = "transform" if own else "external"
            return Relation(logical, served, kind, digest, label, self.columns_of(logical), own)
        if what == "view":
            spec = next(v for v in owner.spec.views if v.name == logical)
            _, digest, label = self._served(owner, spec.table)
            digest += self._segments(owner, spec.name)
            return Relation(logical, self.name(logical), "view", digest, label, self.columns_of(logical))
        served, digest, label = self._served(owner, logical)
        serving = next((v for v in owner.spec.views if v.table == logical), None)
        relation, catalog = served, self._catalog(owner, logical)
        if serving is not None and not (self.ctx and self.ctx.is_canary):
            relation, catalog = self.name(serving.name), None  # views live in the stage's catalog
            digest += self._segments(owner, serving.name)
        return Relation(logical, relation, "table", digest, label, self.columns_of(logical), catalog=catalog)

    @staticmethod
    def _catalog(owner: PipelineRelease, logical: str) -> str | None:
        spec = next((t for t in owner.spec.tables if t.name == logical), None)
        return iceberg.reading_catalog(spec.format) if spec is not None else None

    def _segments(self, owner: PipelineRelease, view: str) -> str:
        if owner.name != self.release.name or not self.view_segments.get(view):
            return ""
        return " segments:" + ",".join(f"{s.table}>={s.since or ''}" for s in self.view_segments[view])
