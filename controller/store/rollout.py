"""Typed rollout progress behind the state store: one document per (release, stage) and one per
release, instead of string keys spelled in several modules (kopf's ``progress.py`` idea).

- ``StageRollout`` (key ``rollout/<release>/<stage>``): the serving view's segments, where each
  green job started (offsets + the time they stand for), which new jobs have soaked, the last
  applied plan of the stage, a rollback's restore while it is under way (``RestoreIntent``), and
  for in-place jobs where the newest version started reading and the checkpoint a rollback moved
  the job to, and a key-subset canary's current step (``KeyStep``).
- ``ReleaseHistory`` (key ``history/<release>``): every promoted version's manifest and commit,
  and the schema texts it shipped (the schema-compatibility gate compares against them).

Only this module spells the keys. Each worker owns one release at a time, so a document is never
written by two passes at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from controller.model.identifiers import semver_key
from controller.plan.keysplit import KeyStep as KeyStep
from controller.plan.resources import ViewSegment
from controller.store.db import Store


class _Doc(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StartPosition(_Doc):
    """Where a green job starts: per-topic offsets (JSON, as Spark's ``startingOffsets``)."""

    offsets: str
    start_time: datetime
    blue: str


class InPlaceStart(_Doc):
    """Where a new version of an in-place job starts reading (recorded before it replaces the old
    one; ``controller.rollout.inplace.start_offsets``): a rollback restarts the known good here."""

    version: str
    """The new version."""
    offsets: str
    """Per-topic offsets (JSON, as Spark's ``startingOffsets``)."""
    checkpoint: str
    """The checkpoint the old job ran on, which the new version resumes from."""
    recorded_at: datetime


class PinnedCheckpoint(_Doc):
    """An in-place job's checkpoint other than its stage's own: after a rollback, the known good
    restarted from ``offsets`` on ``checkpoint``; the job stays there (later versions too)."""

    checkpoint: str
    offsets: str
    after: str
    """The version whose rollback moved the job here."""


class PromotedVersion(_Doc):
    commit: str | None
    manifest: str


class PostPromotion(_Doc):
    version: str
    promoted_at: datetime
    previous: PromotedVersion | None = None
    """The version the stage ran before (restored when a postPromotion gate fails)."""
    segments_before: dict[str, list[ViewSegment]] = Field(default_factory=dict)


class TableRollback(_Doc):
    """What a restore does with one Iceberg table an in-place job of the failed version wrote
    (``controller.rollout.table_rollback``), decided before any side effect."""

    job: str
    """Physical name of the in-place job that writes it."""
    table: str
    """Physical ``db.table``."""
    reason: str
    """A ``PointReason``: ``RollBack``/``NotCommitted`` are exact, any other keeps today's restart."""
    detail: str
    snapshot_id: str | None = None
    """The snapshot the table is made current at (exact points only)."""
    end_offsets: str | None = None
    """Its ``pipectl.end-offsets``: where the known good restarts reading."""
    done: bool = False
    """The job is stopped and the snapshot is current (set once, before the known good restarts)."""


class RestoreIntent(_Doc):
    """A rollback restoring the stage's known good, from when it starts until it ends: every pass
    resumes it (``controller.engine.restore``), a controller restarted after a crash too."""

    version: str
    """The version rolled back."""
    failed: PromotedVersion
    """That version's manifest and commit (the rollback record is about it)."""
    to: PromotedVersion | None = None
    """The known good restored; None: nothing was good here before, only the failed jobs stop."""
    failed_jobs: list[str] = Field(default_factory=list)
    started_at: datetime
    """On the controller's clock: the restore deadline counts from here."""
    trigger: str
    """``gate`` or ``postPromotion``."""
    message: str
    """Why: the failed gates."""
    gates: list[dict[str, Any]] = Field(default_factory=list)
    """The gate verdicts (``GateVerdict`` JSON) for the rollback record."""
    run_id: str | None = None
    """The history row of the gate attempt, written when the restore ends."""
    record_known_good: bool = False
    """Post-promotion: the restored version becomes the stage's known good again."""
    tables: list[TableRollback] = Field(default_factory=list)
    """The failed version's in-place jobs' Iceberg tables and their rollback points."""


class StageRollout(_Doc):
    segments: dict[str, list[ViewSegment]] = Field(default_factory=dict)
    start_offsets: dict[str, StartPosition] = Field(default_factory=dict)
    """Keyed by the physical job name."""
    soaked: dict[str, datetime] = Field(default_factory=dict)
    """Physical job name → the progress time at which it had soaked."""
    last_plan: str | None = None
    """The last non-empty plan applied at the stage (``Plan`` JSON)."""
    inconclusive_since: dict[str, datetime] = Field(default_factory=dict)
    """Gate name → when it first came back inconclusive for ``judged_version`` (the gate timeout)."""
    judged_version: str | None = None
    watch: PostPromotion | None = None
    """Set when a version is promoted at the last stage: what post-promotion analysis restores."""
    restoring: RestoreIntent | None = None
    """A rollback's restore under way (cleared when it ends: RolledBack or RollbackFailed)."""
    inplace_starts: dict[str, InPlaceStart] = Field(default_factory=dict)
    """Physical name of an in-place job → where its newest version started reading."""
    checkpoints: dict[str, PinnedCheckpoint] = Field(default_factory=dict)
    """Physical name of an in-place job → the checkpoint a rollback moved it to."""
    key_step: KeyStep | None = None
    """A key-subset canary's current step (cleared on promotion and on rollback)."""


class RecordedRevision(_Doc):
    """The content a version was first deployed with (``source.revision``)."""

    digest: str
    files: dict[str, str] = Field(default_factory=dict)
    commit: str | None = None
    stage: str


class ReleaseHistory(_Doc):
    versions: dict[str, PromotedVersion] = Field(default_factory=dict)
    revisions: dict[str, RecordedRevision] = Field(default_factory=dict)
    """Version → the revision it was first deployed with; a version's content never changes after."""
    schemas: dict[str, dict[str, str]] = Field(default_factory=dict)
    """Schema name → version → schema text."""

    def sorted_versions(self) -> list[str]:
        return sorted(self.versions, key=semver_key)


class RolloutStore:
    """Typed reads and writes of rollout progress; the only code that knows the keys."""

    OWNED_PREFIXES = ("rollout/", "history/")
    """Keys only the controller's passes write: ``Store.preload_kv`` may read them once per pass."""

    def __init__(self, store: Store):
        self.store = store

    def stage(self, release: str, stage: str) -> StageRollout:
        raw = self.store.kv_get(f"rollout/{release}/{stage}")
        return StageRollout.model_validate_json(raw) if raw else StageRollout()

    def put_stage(self, release: str, stage: str, doc: StageRollout) -> None:
        self.store.kv_put(f"rollout/{release}/{stage}", doc.model_dump_json())

    def history(self, release: str) -> ReleaseHistory:
        raw = self.store.kv_get(f"history/{release}")
        return ReleaseHistory.model_validate_json(raw) if raw else ReleaseHistory()

    def record_promoted(
        self, release: str, version: str, commit: str | None, manifest: str, schemas: dict[str, str]
    ) -> None:
        h = self.history(release)
        h.versions[version] = PromotedVersion(commit=commit, manifest=manifest)
        for name, text in schemas.items():
            h.schemas.setdefault(name, {})[version] = text
        self.store.kv_put(f"history/{release}", h.model_dump_json())

    def record_revision(self, release: str, version: str, rev: RecordedRevision) -> None:
        """Remember the content ``version`` is deployed with (the first time only)."""
        h = self.history(release)
        if version not in h.revisions:
            h.revisions[version] = rev
            self.store.kv_put(f"history/{release}", h.model_dump_json())

    def last_plans(self, release: str) -> dict[str, str]:
        """Stage → the last applied plan's JSON, for ``describe``."""
        found = self.store.kv_prefix(f"rollout/{release}/")
        out = {}
        for key, raw in found.items():
            doc = StageRollout.model_validate_json(raw)
            if doc.last_plan:
                out[key.rsplit("/", 1)[-1]] = doc.last_plan
        return out
