"""The user-facing manifest API: ``PipelineRelease`` and ``Environment`` (``pipectl.dev/v1alpha1``).

Field names are camelCase in YAML (aliases) and snake_case in Python. Every model forbids
unknown fields so a typo is an error, never a silently ignored setting. Cross-object checks
(references, duplicates, cycles, files) live in ``controller.source.validate``; this module
checks what a single object can check on its own. The endpoint models of an Environment live in
``controller.model.endpoints`` (importable from here too).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from controller.model import iceberg
from controller.model import identifiers as ids
from controller.model.analysis import AnalysisTemplate, CanaryGateFields
from controller.model.base import ResourceName, SparkConf
from controller.model.base import Spec as Spec
from controller.model.base import parse_duration as parse_duration
from controller.model.canary_keys import CanaryKeys
from controller.model.endpoints import REGISTRY_HELP, SchemaRegistryEndpoint, check_environment_endpoints
from controller.model.endpoints import AirflowEndpoint as AirflowEndpoint
from controller.model.endpoints import HiveEndpoint as HiveEndpoint
from controller.model.endpoints import KafkaEndpoint as KafkaEndpoint
from controller.model.endpoints import PrestoEndpoint as PrestoEndpoint
from controller.model.endpoints import PrometheusEndpoint as PrometheusEndpoint
from controller.model.endpoints import SparkEndpoint as SparkEndpoint
from controller.model.job_rules import final_windows_problem, starting_points_problem
from controller.model.maintenance import TableMaintenance
from controller.model.overrides import StageOverride as StageOverride
from controller.model.overrides import TopicOverride as TopicOverride
from controller.model.schedule import normalize_schedule

API_VERSION = "pipectl.dev/v1alpha1"


def _check(fn: Any, value: Any, *args: Any) -> Any:
    try:
        return fn(value, *args)
    except ids.IdentifierError as e:
        raise ValueError(str(e)) from None


class Metadata(Spec):
    name: ResourceName = Field(description="Release or environment name (DNS-label style).")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


# --- schemas --------------------------------------------------------------------------------


class SchemaFormat(StrEnum):
    AVRO = "avro"
    JSON = "json"


class Compatibility(StrEnum):
    NONE = "NONE"
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"


class SchemaSpec(Spec):
    name: ResourceName = Field(description="Schema name, referenced by topics' valueSchema/keySchema.")
    format: SchemaFormat = SchemaFormat.AVRO
    path: str = Field(description="Schema file, relative to the repository root.")
    compatibility: Compatibility = Compatibility.BACKWARD


# --- topics ---------------------------------------------------------------------------------


class TopicSpec(Spec):
    name: str = Field(description="Topic name without the stage prefix.")
    partitions: int = Field(gt=0, le=100_000)
    replication_factor: int = Field(gt=0, le=32)
    config: dict[str, str] = Field(default_factory=dict, description="Topic configs; values as strings.")
    value_schema: str | None = None
    key_schema: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return str(_check(ids.check_topic, v))

    @field_validator("config", mode="before")
    @classmethod
    def _config_values(cls, v: Any) -> Any:
        # YAML gives numbers and booleans for unquoted values; Kafka configs are strings.
        if isinstance(v, dict):
            out: dict[Any, Any] = {}
            for k, val in v.items():
                if isinstance(val, bool):
                    out[k] = "true" if val else "false"
                elif isinstance(val, int | float):
                    out[k] = str(val)
                else:
                    out[k] = val
            return out
        return v

    @field_validator("config")
    @classmethod
    def _config_keys(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            _check(ids.check_kafka_config_key, k)
        return v


# --- tables and views -----------------------------------------------------------------------


class ColumnSpec(Spec):
    name: str
    type: str
    comment: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return str(_check(ids.check_hive_ident, v, "column"))

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        return str(_check(ids.normalize_hive_type, v))


class TableFormat(StrEnum):
    PARQUET = "parquet"
    ORC = "orc"
    AVRO = "avro"
    JSON = "json"
    TEXTFILE = "textfile"
    ICEBERG = "iceberg"


class ColumnMigration(Spec):
    """An explicitly approved schema change that pipectl otherwise refuses."""

    op: Literal["drop", "rename", "retype", "reorder"]
    column: str
    to: str | None = Field(default=None, description="New name (rename) or new type (retype).")
    reason: str = Field(description="Why this change is safe; recorded in the audit ledger.")


def _qualified(v: str) -> str:
    _check(ids.split_qualified, v)
    return v


RESERVED_TABLE_PROPERTIES = {"owner", "location", "provider", "comment", "external", "transient_lastddltime"}


class TableSpec(Spec):
    name: str = Field(description="<database>.<table> without the stage prefix.")
    columns: list[ColumnSpec] = Field(min_length=1)
    partitioned_by: list[ColumnSpec] = Field(default_factory=list)
    format: TableFormat = TableFormat.PARQUET
    partitioning: list[str] = Field(
        default_factory=list,
        description="format iceberg only: hidden partition transforms of columns, e.g. "
        "days(window_start), bucket(16, host), truncate(4, name), or a column name (identity).",
    )
    properties: dict[str, str] = Field(default_factory=dict)
    migrations: list[ColumnMigration] = Field(default_factory=list)
    maintenance: TableMaintenance | None = Field(
        default=None,
        description="format iceberg only: retention, snapshot expiry, compaction and orphan-file "
        "removal, run by the controller on this schedule (docs/iceberg.md).",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _qualified(v)

    @field_validator("partitioning")
    @classmethod
    def _partitioning(cls, v: list[str]) -> list[str]:
        return [str(_check(iceberg.normalize_transform, t)) for t in v]

    @model_validator(mode="after")
    def _iceberg(self) -> TableSpec:
        if self.format is not TableFormat.ICEBERG:
            if self.partitioning:
                raise ValueError("partitioning (hidden partition transforms) needs format: iceberg")
            if self.maintenance is not None:
                raise ValueError("maintenance needs format: iceberg")
            return self
        if self.partitioned_by:
            raise ValueError("format iceberg partitions by transforms of columns: use partitioning, "
                             "not partitionedBy")
        names = {c.name for c in self.columns}
        for i, c in enumerate(self.columns):
            try:
                iceberg.check_iceberg_type(c.type)
            except ids.IdentifierError as e:
                raise ValueError(f"columns[{i}] ({c.name}): {e}") from None
        for t in self.partitioning:
            if iceberg.transform_column(t) not in names:
                raise ValueError(f"partitioning {t}: no column {iceberg.transform_column(t)!r}")
        retention = self.maintenance.retention if self.maintenance else None
        if retention is not None and iceberg.time_transform(self.partitioning, retention.column) is None:
            raise ValueError(
                f"maintenance.retention.column {retention.column!r}: the table must be partitioned by "
                "years|months|days|hours of it, so that retention drops whole partitions"
            )
        return self

    @field_validator("properties")
    @classmethod
    def _properties(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if key.lower() in RESERVED_TABLE_PROPERTIES:
                raise ValueError(f"table property {key!r} is reserved by Spark/Hive")
            if key.startswith("pipectl."):
                raise ValueError(f"table property {key!r} is reserved for pipectl's ownership records")
        return v


class ViewSpec(Spec):
    name: str = Field(description="<database>.<view>: the serving view dashboards query.")
    table: str = Field(description="The table the view serves; pipectl points it at the live version.")

    @field_validator("name", "table")
    @classmethod
    def _names(cls, v: str) -> str:
        return _qualified(v)


# --- streaming jobs -------------------------------------------------------------------------


class Strategy(StrEnum):
    IN_PLACE = "inPlace"
    BLUE_GREEN = "blueGreen"
    CANARY = "canary"


class SourceRef(Spec):
    topic: str
    starting_offsets: Literal["earliest", "latest"] = "latest"

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        return str(_check(ids.check_topic, v))


class SinkRef(Spec):
    table: str

    @field_validator("table")
    @classmethod
    def _table(cls, v: str) -> str:
        return _qualified(v)


class StreamingJobSpec(Spec):
    name: ResourceName
    entrypoint: str = Field(description="PySpark script, relative to the repository root.")
    sources: list[SourceRef] = Field(min_length=1)
    sinks: list[SinkRef] = Field(min_length=1)
    trigger: str = "10s"
    strategy: Strategy = Strategy.IN_PLACE
    conf: SparkConf = Field(default_factory=dict)
    args: list[str] = Field(default_factory=list, description="Extra arguments passed to the entrypoint.")
    replay_window: str = Field(default="5m", description="Blue/green: green starts this far behind blue.")
    keys: CanaryKeys | None = Field(
        default=None,
        description="Canary only: serve the new version to a growing share of the keys (steps), gates "
        "at each step. Omitted: canary behaves as blueGreen (one switch of the whole view).",
    )

    @model_validator(mode="after")
    def _keys_need_canary(self) -> StreamingJobSpec:
        if self.keys is not None and self.strategy is not Strategy.CANARY:
            raise ValueError(f"keys needs strategy canary (this job's strategy is {self.strategy.value})")
        return self

    @model_validator(mode="after")
    def _cross_field_rules(self) -> StreamingJobSpec:
        keyless_canary = self.strategy is Strategy.CANARY and self.keys is None
        own_table = self.strategy is Strategy.BLUE_GREEN or keyless_canary
        for problem in (
            starting_points_problem({s.starting_offsets for s in self.sources}),
            final_windows_problem(self.args, own_table),
        ):
            if problem is not None:
                raise ValueError(problem)
        return self

    @field_validator("trigger", "replay_window")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v



# --- DAGs and transforms --------------------------------------------------------------------


class DagSpec(Spec):
    id: str
    path: str = Field(description="DAG file, relative to the repository root.")
    schedule: str | None = Field(
        default=None,
        description="When Airflow runs the DAG: a 5-field cron expression, an Airflow preset (@hourly, "
        "@daily, @weekly, @monthly, @quarterly, @yearly, @once, @continuous) or null for triggered runs "
        "only. pipectl writes it into the DAG's sidecar (schedule), the DAG file passes "
        "PIPECTL.get('schedule') to DAG(schedule=...), and a deploy fails when Airflow reports another "
        "schedule. Omitted: the DAG file's own schedule, not checked.",
    )
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return str(_check(ids.check_dag_id, v))

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str | None) -> str | None:
        return normalize_schedule(v)

    @property
    def schedule_managed(self) -> bool:
        """The manifest sets the schedule (``schedule: null`` too): pipectl deploys and checks it."""
        return "schedule" in self.model_fields_set


class Materialization(StrEnum):
    VIEW = "view"
    TABLE = "table"
    INCREMENTAL = "incremental"


class TransformSpec(Spec):
    name: str = Field(description="<database>.<name> of the output relation.")
    sql: str = Field(description="SQL file using {{ ref('db.name') }}, relative to the repository root.")
    materialized: Materialization = Materialization.VIEW
    partition_by: list[str] = Field(default_factory=list)
    columns: list[ColumnSpec] | None = Field(default=None, description="Declared output contract.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _qualified(v)


# --- rollout --------------------------------------------------------------------------------


DEFAULT_INCONCLUSIVE_TIMEOUT = "15m"


class GateBase(Spec):
    name: ResourceName
    stages: list[str] | None = Field(default=None, description="Stages the gate applies to; default all.")
    post_promotion: bool = Field(
        default=False,
        description="Keep evaluating this gate at the last stage after promotion, for rollout.analysis.bake; "
        "a failure then rolls that stage back to the version it ran before.",
    )
    inconclusive_timeout: str | None = Field(
        default=None,
        description="How long the gate may stay inconclusive before it counts as failed (and the stage "
        "rolls back), e.g. '15m'. Default 15m; approval gates wait for a person without a timeout "
        "unless set.",
    )

    @field_validator("inconclusive_timeout")
    @classmethod
    def _timeout(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v

    def inconclusive_timeout_seconds(self) -> float | None:
        if self.inconclusive_timeout is not None:
            return parse_duration(self.inconclusive_timeout)
        if getattr(self, "type", None) == "approval":
            return None
        return parse_duration(DEFAULT_INCONCLUSIVE_TIMEOUT)


class SchemaCompatibilityGate(GateBase):
    type: Literal["schemaCompatibility"]


class DataQualityGate(GateBase):
    type: Literal["dataQuality"]
    query: str = Field(description="SQL run through Presto against the stage's tables; one numeric cell.")
    expect: str = Field(description="Comparison for the result, e.g. '> 0', '<= 0.01', '== 0'.")

    @field_validator("expect")
    @classmethod
    def _expect(cls, v: str) -> str:
        parse_expectation(v)
        return v


class StreamingHealthGate(GateBase):
    type: Literal["streamingHealth"]
    max_lag_seconds: float = Field(default=60, gt=0)
    max_batch_duration_seconds: float | None = Field(default=None, gt=0)
    max_undecodable_records: int | None = Field(
        default=None, ge=0,
        description="Fail when a job has counted more records it could not decode (bad wire-format "
        "header, unknown schema id, corrupt body) since it started; a job that reports no count fails. "
        "Unset: not judged.",
    )
    min_processing_ratio: float = Field(default=1.0, gt=0)
    window: str = "1m"


class CanaryComparisonGate(GateBase, CanaryGateFields):
    """Canary vs baseline (``controller.rollout.canary``); fields in ``analysis.CanaryGateFields``."""

    type: Literal["canaryComparison"]


class ApprovalGate(GateBase):
    type: Literal["approval"]


GATE_TYPES = ("schemaCompatibility", "dataQuality", "streamingHealth", "canaryComparison", "approval")

Gate = Annotated[
    SchemaCompatibilityGate | DataQualityGate | StreamingHealthGate | CanaryComparisonGate | ApprovalGate,
    Field(discriminator="type"),
]


def parse_expectation(text: str) -> tuple[str, float]:
    import re

    m = re.fullmatch(r"\s*(==|!=|>=|<=|>|<)\s*(-?\d+(?:\.\d+)?(?:[eE]-?\d+)?)\s*", text)
    if not m:
        raise ValueError(f"invalid expectation {text!r}: expected an operator and a number, e.g. '> 0'")
    return m.group(1), float(m.group(2))


class RollbackSpec(Spec):
    automatic: bool = True


REMOVED_FIELDS: dict[tuple[str | int, ...], str] = {
    ("spec", "transforms", "*", "schedule"): "removed: a transform runs when a DAG calls `pipectl transform "
    "run`; set the schedule on that DAG (dags[].schedule)",
    ("spec", "rollout", "rollback", "gitRevert"): "removed: pipectl does not commit reverts to the "
    "manifest repository; revert the failed change in git yourself (the rollback record names it)",
}
"""Fields older manifests may still carry, with what to do instead (``controller.source.validate``
reports them at their line instead of a bare "unknown field"); ``*`` stands for a list index."""


class AnalysisSpec(Spec):
    """Post-promotion analysis at the last stage (Argo Rollouts' background analysis)."""

    bake: str = Field(default="15m", description="How long postPromotion gates keep running after promotion.")

    @field_validator("bake")
    @classmethod
    def _bake(cls, v: str) -> str:
        parse_duration(v)
        return v


class RolloutSpec(Spec):
    stages: list[str] = Field(default_factory=lambda: ["dev", "staging", "canary", "prod"], min_length=1)
    gates: list[Gate] = Field(default_factory=list)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    rollback: RollbackSpec = Field(default_factory=RollbackSpec)
    overrides: dict[str, StageOverride] = Field(
        default_factory=dict,
        description="By stage name: what that stage changes of the release (topics' partitions, "
        "replicationFactor and config; Spark conf of its streaming jobs).",
    )


# --- the release ----------------------------------------------------------------------------


class PipelineReleaseSpec(Spec):
    version: str
    owner: str | None = None
    description: str | None = None
    schemas: list[SchemaSpec] = Field(default_factory=list)
    topics: list[TopicSpec] = Field(default_factory=list)
    tables: list[TableSpec] = Field(default_factory=list)
    views: list[ViewSpec] = Field(default_factory=list)
    streaming_jobs: list[StreamingJobSpec] = Field(default_factory=list)
    dags: list[DagSpec] = Field(default_factory=list)
    transforms: list[TransformSpec] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list, description="Releases that must be Succeeded first.")
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        # `version: 1.0` is a float to YAML; report it as a bad version, not as a type error.
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        return str(_check(ids.check_semver, v))


class PipelineRelease(Spec):
    api_version: Literal["pipectl.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["PipelineRelease"]
    metadata: Metadata
    spec: PipelineReleaseSpec

    @property
    def name(self) -> str:
        return self.metadata.name


# --- environments ---------------------------------------------------------------------------


class Promotion(StrEnum):
    AUTOMATIC = "automatic"
    APPROVAL = "approval"


class Approvers(Spec):
    """Who may approve promotion into a stage: any listed user, or any member of a listed group."""

    users: list[str] = Field(default_factory=list, description="Principal user names (API tokens).")
    groups: list[str] = Field(default_factory=list, description="Principal groups (API tokens).")

    @model_validator(mode="after")
    def _someone(self) -> Approvers:
        if not self.users and not self.groups:
            raise ValueError("approvers must name at least one user or group (omit it to let anyone approve)")
        return self

    def allows(self, user: str, groups: tuple[str, ...] | list[str]) -> bool:
        return user in self.users or bool(set(groups) & set(self.groups))


class EnvironmentSpec(Spec):
    kafka: KafkaEndpoint | None = None
    hive: HiveEndpoint | None = None
    presto: PrestoEndpoint | None = None
    airflow: AirflowEndpoint | None = None
    spark: SparkEndpoint | None = None
    prometheus: PrometheusEndpoint | None = None
    schema_registry: SchemaRegistryEndpoint | None = Field(default=None, description=REGISTRY_HELP)
    promotion: Promotion = Promotion.AUTOMATIC
    approvers: Approvers | None = Field(
        default=None,
        description="Who may approve this stage (users or groups of API principals); unset: any principal.",
    )
    canary_of: str | None = Field(
        default=None, description="This stage runs beside that stage's installation, on its inputs."
    )
    analysis_templates: list[AnalysisTemplate] = Field(
        default_factory=list, description="Templates of canaryComparison gates (canary stages: the target's)."
    )

    @model_validator(mode="after")
    def _endpoints(self) -> EnvironmentSpec:
        return check_environment_endpoints(self)


class Environment(Spec):
    api_version: Literal["pipectl.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Environment"]
    metadata: Metadata
    spec: EnvironmentSpec

    @property
    def name(self) -> str:
        return self.metadata.name


KINDS: dict[str, type[Spec]] = {"PipelineRelease": PipelineRelease, "Environment": Environment}
