"""What a gate reads and returns: ``GateData`` (the data seam), ``GateContext`` and ``GateVerdict``.

Gates are pure decisions: everything they look at arrives through ``GateContext`` (names, the
time, the repository's schema texts) and ``GateData`` (queries against live systems). The engine
supplies a ``GateData`` backed by the adapters (Presto, Kafka, Prometheus, the Spark job registry,
the audit ledger); unit tests supply an in-memory one. ``controller.rollout`` never imports an adapter.

``GateVerdict`` has exactly the fields of the audit ledger's ``controller.audit.ledger.GateVerdict``
(the ledger lives in a layer that may use a database, which the pure core may not import):
``ledger.GateVerdict.model_validate(v.model_dump(mode="json"))`` converts one into the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from controller.model.manifest import PipelineRelease
from controller.model.reasons import Verdict
from controller.model.status import GateResult
from controller.plan.desired import StageContext, job_name, physical_table, table_name
from controller.plan.keysplit import KeyFilter

# --- the data seam --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgressView:
    """The latest progress a streaming job reported (a Spark ``StreamingQueryProgress``, reduced).

    Rates and the batch duration are ``None`` when the job did not report them (Spark leaves them
    out of the first batch). ``source_end_offsets`` is topic → partition → the offset the job has
    processed up to; ``watermark`` and ``timestamp`` are timezone-aware (UTC).
    """

    batch_id: int
    input_rows_per_second: float | None
    processed_rows_per_second: float | None
    batch_duration_ms: float | None
    source_end_offsets: Mapping[str, Mapping[int, int]]
    watermark: datetime | None
    timestamp: datetime
    num_input_rows: int | None = None
    undecodable_records: int | None = None
    """Records the job counted as undecodable since it started (``controller.jobkit.wire``);
    ``None`` when the job does not report the count."""


class JobNotFound(LookupError):
    """``GateData.job_progress``: no such job is deployed (as opposed to: running, no progress yet)."""


class GateData(Protocol):
    """Everything a gate may read from the world. Errors: pipectl's ``BackendError`` tree.

    A ``TransientBackendError`` makes a gate inconclusive (it is evaluated again later); a
    ``PermanentBackendError`` (bad SQL, a missing table) makes it fail.
    """

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Run one SELECT through Presto (names already rewritten to the stage's tables)."""
        ...

    def job_progress(self, job_name: str) -> ProgressView | None:
        """Latest progress of a streaming job; None if it runs but has not reported yet.

        Raises ``JobNotFound`` when no job of that name is deployed.
        """
        ...

    def end_offsets(self, topic: str) -> dict[int, int]:
        """Kafka's latest (high-watermark) offsets of a topic: partition → offset."""
        ...

    def committed_offsets(self, group: str) -> dict[str, dict[int, int]]:
        """A consumer group's committed offsets: topic → partition → offset (unknown group: empty)."""
        ...

    def prometheus_query(self, promql: str, at: datetime) -> list[float]:
        """The values of an instant PromQL query's series (a scalar: one value) at ``at``.

        Raises ``PermanentBackendError`` when the stage has no Prometheus endpoint.
        """
        ...

    def live_schema(self, release: str, schema: str) -> list[str]:
        """Texts of the earlier known-good versions of a release's schema, newest first."""
        ...

    def approval(self, release: str, stage: str, version: str, revision: str | None) -> str | None:
        """The principal that approved exactly (release, stage, version, revision digest), or None."""
        ...


# --- context --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateContext:
    """Where and when a gate is evaluated, and the physical names of the stage's resources.

    Mappings are logical → physical: ``tables`` (``db.table``; blue/green versions may map to a
    versioned table), ``jobs`` (the release's streaming job names → deployed job names),
    ``baseline_tables``/``baseline_jobs`` (prod's current version, for canary comparison) and
    ``canary_tables`` (the canary's shadow outputs). ``schemas`` holds the repository's schema
    texts by schema name. ``now`` is passed in so a verdict depends on its inputs only.
    """

    release: PipelineRelease
    stage: str
    stage_ctx: StageContext
    now: datetime
    schemas: Mapping[str, str] = field(default_factory=dict)
    tables: Mapping[str, str] = field(default_factory=dict)
    jobs: Mapping[str, str] = field(default_factory=dict)
    baseline_tables: Mapping[str, str] = field(default_factory=dict)
    baseline_jobs: Mapping[str, str] = field(default_factory=dict)
    canary_tables: Mapping[str, str] = field(default_factory=dict)
    baseline_version: str | None = None
    """The known-good version the canary is compared with (None: nothing runs beside it)."""
    revision: str | None = None
    """The digest of the release's revision (``controller.source.revision``) being judged."""
    canary_keys: KeyFilter | None = None
    """A key-subset canary's step (key columns, percent or listed keys): the canary comparison reads
    only the keys the canary serves (``controller.plan.keysplit.served_predicate``), on both sides."""
    catalogs: Mapping[str, str] = field(default_factory=dict)
    """Physical table → the Presto catalog that reads it, where that is not the stage's own
    (an Iceberg table: ``plan.desired.table_catalogs``), for this version and the baseline."""

    def relation(self, physical: str) -> str:
        """``db.table`` as Presto addresses it from the stage's catalog: ``catalog.db.table`` for a
        table only another catalog reads, else unchanged."""
        catalog = self.catalogs.get(physical)
        return f"{catalog}.{physical}" if catalog else physical

    @property
    def version(self) -> str:
        return self.release.spec.version

    @property
    def now_utc(self) -> datetime:
        return as_utc(self.now)


def default_tables(release: PipelineRelease, ctx: StageContext, version: str | None = None) -> dict[str, str]:
    """Logical → physical tables and views of ``version`` (default: the release's) at a stage.

    By the naming rules of ``plan.desired.physical_table``: blue/green and canary sinks get a
    per-version table, other tables the stage's prefix (and a canary stage's shadow suffix).
    Views keep the prefix only; a canary stage serves no view of its own, so they are left out.
    """
    v = version or release.spec.version
    out = {t.name: physical_table(ctx, release, t.name, v) for t in release.spec.tables}
    if not ctx.is_canary:
        out.update({view.name: table_name(ctx, view.name) for view in release.spec.views})
    return out


def default_jobs(release: PipelineRelease, ctx: StageContext, version: str | None = None) -> dict[str, str]:
    """Logical → deployed streaming job names of ``version`` at a stage (``plan.desired.job_name``)."""
    v = version or release.spec.version
    return {j.name: job_name(ctx, release.name, j, v) for j in release.spec.streaming_jobs}


def as_utc(t: datetime) -> datetime:
    """A timezone-aware UTC datetime; a naive one is taken to be UTC already."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


# --- verdicts -------------------------------------------------------------------------------


class GateVerdict(BaseModel):
    """One gate's verdict with the evidence it was based on (stored in the audit ledger)."""

    model_config = ConfigDict(frozen=True)

    name: str
    type: str
    verdict: Verdict
    message: str = ""
    evidence: dict[str, Any] = Field(default_factory=dict)

    def to_result(self) -> GateResult:
        """The short form shown in a stage's status."""
        return GateResult(name=self.name, type=self.type, verdict=self.verdict, message=self.message)


_RANK = {Verdict.PASS: 0, Verdict.INCONCLUSIVE: 1, Verdict.FAIL: 2}


def worst(verdicts: list[Verdict]) -> Verdict:
    """fail over inconclusive over pass; pass for an empty list."""
    return max(verdicts, key=_RANK.__getitem__, default=Verdict.PASS)
