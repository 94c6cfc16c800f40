"""Concrete, stage-scoped resources: what a release wants (desired) and what a backend has (live).

One model per kind serves both sides; a live object simply carries what the backend reported.
Names here are physical (stage prefixes applied), unlike the manifest's logical names.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from controller.model.frozen import Frozen


class ResourceKind(StrEnum):
    DATABASE = "Database"
    TOPIC = "Topic"
    TABLE = "Table"
    STREAMING_JOB = "StreamingJob"
    VIEW = "View"
    DAG = "Dag"
    TRANSFORM = "Transform"


# Apply order (dependencies first); deletes run in reverse.
KIND_ORDER: tuple[ResourceKind, ...] = (
    ResourceKind.DATABASE,
    ResourceKind.TOPIC,
    ResourceKind.TABLE,
    ResourceKind.STREAMING_JOB,
    ResourceKind.VIEW,
    ResourceKind.DAG,
    ResourceKind.TRANSFORM,
)


class Owner(Frozen):
    model_config = ConfigDict(frozen=True, extra="forbid")
    release: str
    version: str


class _Res(Frozen):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(description="Physical, stage-scoped name (e.g. dev.telemetry.host_metrics).")
    owner: Owner | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (str(getattr(self, "kind")), self.name)  # noqa: B009


class DatabaseResource(_Res):
    kind: Literal["Database"] = "Database"


class TopicResource(_Res):
    kind: Literal["Topic"] = "Topic"
    partitions: int
    replication_factor: int
    config: dict[str, str] = Field(default_factory=dict)


class Column(Frozen):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    type: str


class Migration(Frozen):
    model_config = ConfigDict(frozen=True, extra="forbid")
    op: Literal["drop", "rename", "retype", "reorder"]
    column: str
    to: str | None = None


class TableResource(_Res):
    """A Hive table; ``name`` is ``db.table``."""

    kind: Literal["Table"] = "Table"
    columns: list[Column]
    partition_columns: list[Column] = Field(default_factory=list)
    format: str = "parquet"
    partitioning: list[str] = Field(
        default_factory=list, description="Iceberg hidden partition transforms, as Spark reports them."
    )
    properties: dict[str, str] = Field(default_factory=dict)
    location: str | None = None
    migrations: list[Migration] = Field(default_factory=list, description="Desired side only.")


TIME_COLUMN = "window_start"
"""The time column a stitched serving view splits its segments on."""


class ViewSegment(Frozen):
    """One stretch of a stitched serving view: rows of ``table`` from ``since`` (inclusive) on."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    table: str
    since: str | None = Field(
        default=None, description="UTC timestamp 'YYYY-MM-DD HH:MM:SS'; None = from the start."
    )


class KeySplit(Frozen):
    """Key-subset canary serving of a view: keys whose bucket (``controller.plan.keysplit``) is below
    ``percent`` — or, with ``keys``, the keys listed — are served by ``segments`` (the canary side),
    all other keys by the view's own segments (the stable side)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    columns: list[str]
    percent: int | None = Field(
        ge=0, le=100, description="The step; None for a listed split read back (the SQL holds the keys)."
    )
    segments: list[ViewSegment]
    keys: list[str] | None = Field(
        default=None, description="The canary's keys (key text, sorted); None: bucket < percent."
    )


class ViewResource(_Res):
    """A serving view; ``target`` is the ``db.table`` it selects from.

    With ``segments`` (blue/green), the view stitches versions by time: each segment serves
    ``time_column`` from its ``since`` up to the next segment's, so history written by an earlier
    version stays visible after a switch and no time bucket is served twice.
    """

    kind: Literal["View"] = "View"
    target: str
    columns: list[str] = Field(default_factory=list, description="Selected columns; empty means *.")
    segments: list[ViewSegment] = Field(default_factory=list)
    time_column: str = TIME_COLUMN
    key_split: KeySplit | None = Field(
        default=None, description="Key-subset canary: the keys below a bucket percent from other segments."
    )


class DagResource(_Res):
    """An Airflow DAG; ``name`` is the stage-scoped dag_id."""

    kind: Literal["Dag"] = "Dag"
    file_name: str
    source_digest: str
    version: str
    paused: bool = False
    source: str | None = Field(default=None, description="File content (desired side) for the deployer.")
    schedule_managed: bool = Field(
        default=False, description="Desired: the manifest sets the schedule; pipectl deploys and checks it."
    )
    schedule: str | None = Field(
        default=None, description="Cron expression or preset as Airflow reports it; None: triggered runs."
    )
    reported: bool = Field(
        default=True,
        description="Live: Airflow reports the DAG. False: only its deployed file and sidecar say it "
        "exists (Airflow has not parsed it yet); it still holds the dag_id for the release it names.",
    )


class StreamingJobResource(_Res):
    """A Spark Structured Streaming query run by pipectl; ``name`` is the stage-scoped query name."""

    kind: Literal["StreamingJob"] = "StreamingJob"
    version: str
    entrypoint: str
    entrypoint_digest: str
    args: list[str] = Field(default_factory=list)
    conf: dict[str, str] = Field(default_factory=dict)
    checkpoint: str
    running: bool = True
    strategy: str = "inPlace"


class TransformInput(Frozen):
    """One relation a transform reads through ``{{ ref() }}``, and what identifies its content."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    ref: str = Field(description="The logical name as written in ref('db.name').")
    relation: str = Field(description="The physical relation the compiled SQL reads at this stage.")
    kind: Literal["table", "view", "transform", "external"] = "table"
    digest: str = Field(description="Identity of what the relation serves (served table + version, …).")
    label: str = Field(default="", description="The same for people, e.g. v1_1_0 or sha256:1a2b3c4d5e6f.")


class TransformResource(_Res):
    """A SQL transform; ``name`` is the ``db.name`` dashboards query (the serving view).

    ``digest`` identifies a materialization: the compiled SQL digest, the materialization and the
    digests of every upstream input, so a change upstream changes it too (modified-only re-runs).
    """

    kind: Literal["Transform"] = "Transform"
    materialized: str
    compiled_sql_digest: str
    compiled_sql: str | None = None
    digest: str = Field(default="", description="Materialization identity (SQL + inputs + settings).")
    refs: list[str] = Field(default_factory=list, description="Logical refs, in order of appearance.")
    upstream: list[TransformInput] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list, description="Upstream transforms (physical).")
    columns: list[Column] = Field(default_factory=list, description="Output columns and types.")
    contract: list[Column] | None = Field(default=None, description="Declared output contract, if any.")
    contract_breaks: list[str] = Field(default_factory=list, description="Desired side: broken contracts.")
    partition_by: list[str] = Field(default_factory=list)
    relation: str | None = Field(
        default=None, description="Live side: the physical table the serving view reads (table/incremental)."
    )
    managed: bool = Field(default=True, description="Live side: False when pipectl did not create it.")
    partitions: list[str] = Field(default_factory=list, description="Live side: partitions (incremental).")


Resource = Annotated[
    DatabaseResource
    | TopicResource
    | TableResource
    | ViewResource
    | DagResource
    | StreamingJobResource
    | TransformResource,
    Field(discriminator="kind"),
]
