"""From a release and a stage to concrete desired resources (stage prefixes, scoped names).

Pure: file contents come through the ``read`` callable, so the same inputs always give the same
resources. Canary stages (``canaryOf``) run on their target's endpoints and inputs: they declare the
target's topics (shared, not copied) but no serving views or DAGs, and write per-version tables
(blue/green jobs) or shadow tables suffixed ``__canary`` (in-place jobs).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from controller.model import iceberg
from controller.model.manifest import (
    Environment,
    EnvironmentSpec,
    PipelineRelease,
    Strategy,
    StreamingJobSpec,
)
from controller.plan.resources import (
    Column,
    DagResource,
    DatabaseResource,
    KeySplit,
    Migration,
    Owner,
    StreamingJobResource,
    TableResource,
    TopicResource,
    TransformResource,
    ViewResource,
    ViewSegment,
)

CANARY_SUFFIX = "__canary"
TAKEOVER = ["--takeover-table"]
"""Given to an in-place job the rollout moved to a fresh checkpoint: the job kit's sink writes a
table from one checkpoint only and takes it over from another only when told to
(``controller.jobkit.sink``), and the move is the controller's explicit decision."""
Reader = Callable[[str], bytes]


@dataclass(frozen=True)
class StageContext:
    """The effective environment of one stage (a canary stage borrows its target's endpoints)."""

    stage: str
    spec: EnvironmentSpec
    canary_of: str | None = None

    @property
    def is_canary(self) -> bool:
        return self.canary_of is not None

    @property
    def topic_prefix(self) -> str:
        return self.spec.kafka.topic_prefix if self.spec.kafka else ""

    @property
    def db_prefix(self) -> str:
        return self.spec.hive.database_prefix if self.spec.hive else ""


def stage_context(stage: str, environments: dict[str, Environment]) -> StageContext:
    env = environments[stage]
    if env.spec.canary_of:
        target = environments[env.spec.canary_of]
        return StageContext(stage=stage, spec=target.spec, canary_of=env.spec.canary_of)
    return StageContext(stage=stage, spec=env.spec)


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


VERSIONED_STRATEGIES = {Strategy.BLUE_GREEN, Strategy.CANARY}


@dataclass(frozen=True)
class RolloutInputs:
    """What the rollout decided for this pass: which version serves, how views stitch, where
    green jobs start. Defaults describe a plain deploy of the release's own version."""

    serving_version: str | None = None
    view_segments: dict[str, list[ViewSegment]] = field(default_factory=dict)
    start_offsets: dict[str, str] = field(default_factory=dict)
    checkpoints: dict[str, str] = field(default_factory=dict)
    """Job name → the checkpoint an in-place job runs on instead of its stage's own (after a
    rollback: the known good restarted from recorded offsets, ``controller.rollout.inplace``)."""
    key_splits: dict[str, KeySplit] = field(default_factory=dict)
    """Logical view → the keys a key-subset canary serves from the new version (``rollout.keysteps``)."""
    declare_topics: bool = True
    """A canary stage sets this False once its target has a known-good release: the topics are
    the target's, and only the target's own rollout may change their spec."""


def vtag(version: str) -> str:
    """``1.2.0-rc.1`` → ``v1_2_0_rc_1``: a version as a Hive/Spark-safe name part."""
    return "v" + re.sub(r"[^0-9a-z]+", "_", version.lower()).strip("_")


def versioned_tables(release: PipelineRelease) -> set[str]:
    """Logical tables written by blue/green or canary jobs: each version gets its own table."""
    return {
        sink.table
        for job in release.spec.streaming_jobs
        if job.strategy in VERSIONED_STRATEGIES
        for sink in job.sinks
    }


def topic_name(ctx: StageContext, logical: str) -> str:
    return ctx.topic_prefix + logical


def table_name(ctx: StageContext, logical: str, *, shadow: bool = False) -> str:
    db, table = logical.split(".", 1)
    suffix = CANARY_SUFFIX if shadow and ctx.is_canary else ""
    return f"{ctx.db_prefix}{db}.{table}{suffix}"


def physical_table(ctx: StageContext, release: PipelineRelease, logical: str, version: str) -> str:
    """Where ``logical`` lives for ``version`` at this stage."""
    if logical in versioned_tables(release):
        return f"{table_name(ctx, logical)}__{vtag(version)}"
    return table_name(ctx, logical, shadow=True)


def table_catalogs(ctx: StageContext, release: PipelineRelease, version: str) -> dict[str, str]:
    """Physical table → the Presto catalog that reads it, for each table of ``version`` that the
    stage's own catalog cannot read (``format: iceberg`` → ``iceberg``)."""
    return {
        physical_table(ctx, release, t.name, version): catalog
        for t in release.spec.tables
        if (catalog := iceberg.reading_catalog(t.format)) is not None
    }


def database_name(ctx: StageContext, logical_db: str) -> str:
    return ctx.db_prefix + logical_db


def dag_id(ctx: StageContext, logical: str) -> str:
    return f"{logical}__{ctx.stage}"


def job_name(ctx: StageContext, release: str, job: StreamingJobSpec, version: str) -> str:
    """Blue/green and canary jobs are per version and live in the target stage's namespace (the
    canary of prod *is* prod's next green); in-place jobs keep one name per stage."""
    base = ctx.canary_of or ctx.stage
    if job.strategy in VERSIONED_STRATEGIES:
        return f"{base}-{release}-{job.name}-{vtag(version).replace('_', '-')}"
    if ctx.is_canary:
        return f"{base}-{release}-{job.name}-canary"
    return f"{ctx.stage}-{release}-{job.name}"


def checkpoint_dir(ctx: StageContext, release: str, job: StreamingJobSpec, version: str, root: str) -> str:
    base = ctx.canary_of or ctx.stage
    if job.strategy in VERSIONED_STRATEGIES:
        return f"{root.rstrip('/')}/{base}/{release}/{job.name}/{vtag(version)}"
    stage = f"{base}-canary" if ctx.is_canary else ctx.stage
    return f"{root.rstrip('/')}/{stage}/{release}/{job.name}"


Desired = (
    DatabaseResource
    | TopicResource
    | TableResource
    | ViewResource
    | DagResource
    | StreamingJobResource
    | TransformResource
)


def desired_resources(
    release: PipelineRelease,
    ctx: StageContext,
    read: Reader,
    checkpoint_root: str = ".pipectl/checkpoints",
    rollout: RolloutInputs | None = None,
    *,
    upstream_releases: Sequence[PipelineRelease] = (),
) -> list[Desired]:
    """``upstream_releases``: the releases named in ``dependsOn``, so transforms can ref their
    relations (schemas, served versions); without them such refs resolve by name only."""
    rollout = rollout or RolloutInputs()
    serving = rollout.serving_version or release.spec.version
    owner = Owner(release=release.name, version=release.spec.version)
    out: list[Desired] = []
    out += _databases(release, ctx, owner)
    out += _topics(release, ctx, owner, rollout)
    out += _tables(release, ctx, owner)
    out += _streaming_jobs(release, ctx, read, owner, checkpoint_root, rollout)
    if not ctx.is_canary:
        out += _views(release, ctx, owner, serving, rollout)
        out += _dags(release, ctx, read, owner)
        # SQL transforms (after views: they read serving views). Not in canary stages: a canary
        # writes shadow/per-version tables in its target's namespace, and a transform there would
        # replace the target's own (see controller.plan.transforms).
        if release.spec.transforms:
            from controller.plan.transforms import transform_resources  # imports desired: lazy

            out += transform_resources(
                release,
                ctx,
                read,
                upstream=upstream_releases,
                serving_version=serving,
                view_segments=rollout.view_segments,
            )
    return out


def _databases(release: PipelineRelease, ctx: StageContext, owner: Owner) -> list[DatabaseResource]:
    """The databases of the release's tables and views, then (not in a canary stage) those only its
    transforms use."""
    spec = release.spec
    dbs = sorted({t.name.split(".")[0] for t in spec.tables} | {v.name.split(".")[0] for v in spec.views})
    out = [DatabaseResource(name=database_name(ctx, db), owner=owner) for db in dbs]
    if not ctx.is_canary:
        tdbs = sorted({t.name.split(".")[0] for t in spec.transforms} - set(dbs))
        out += [DatabaseResource(name=database_name(ctx, db), owner=owner) for db in tdbs]
    return out


def _topics(
    release: PipelineRelease, ctx: StageContext, owner: Owner, rollout: RolloutInputs
) -> list[TopicResource]:
    """The release's topics with the stage's overrides. A canary stage reads its target's topics; it
    declares them too (same names, same spec, the target's overrides), so the very first canary does
    not wait for a topic the target stage has not created yet."""
    spec = release.spec
    topic_override = spec.rollout.overrides.get(ctx.canary_of or ctx.stage)
    out: list[TopicResource] = []
    for t in spec.topics if (rollout.declare_topics or not ctx.is_canary) else []:
        partitions, rf, config = t.partitions, t.replication_factor, dict(t.config)
        if topic_override and t.name in topic_override.topics:
            o = topic_override.topics[t.name]
            partitions = o.partitions or partitions
            rf = o.replication_factor or rf
            config.update(o.config)
        out.append(
            TopicResource(
                name=topic_name(ctx, t.name),
                owner=owner,
                partitions=partitions,
                replication_factor=rf,
                config=config,
            )
        )
    return out


def _tables(release: PipelineRelease, ctx: StageContext, owner: Owner) -> list[TableResource]:
    """The release's tables, each at its physical name for the release's version."""
    version = release.spec.version
    out: list[TableResource] = []
    for tb in release.spec.tables:
        props = dict(tb.properties)
        props.update({"pipectl.release": release.name, "pipectl.version": version})
        out.append(
            TableResource(
                name=physical_table(ctx, release, tb.name, version),
                owner=owner,
                columns=[Column(name=c.name, type=c.type) for c in tb.columns],
                partition_columns=[Column(name=c.name, type=c.type) for c in tb.partitioned_by],
                format=tb.format.value,
                partitioning=list(tb.partitioning),
                properties=props,
                migrations=[Migration(op=m.op, column=m.column, to=m.to) for m in tb.migrations],
            )
        )
    return out


def _streaming_jobs(
    release: PipelineRelease,
    ctx: StageContext,
    read: Reader,
    owner: Owner,
    checkpoint_root: str,
    rollout: RolloutInputs,
) -> list[StreamingJobResource]:
    """The release's streaming jobs: names, checkpoints and arguments for the stage (the stage's
    conf overrides applied, green jobs starting where the rollout says)."""
    spec = release.spec
    version = spec.version
    override = spec.rollout.overrides.get(ctx.stage)
    spark = ctx.spec.spark
    # The environment's checkpointRoot (absolute or a URI, checked by the model) wins over the
    # controller's default under its state directory.
    root = spark.checkpoint_root if spark and spark.checkpoint_root else checkpoint_root
    out: list[StreamingJobResource] = []
    for job in spec.streaming_jobs:
        code = read(job.entrypoint)
        # Least to most specific: the environment's spark.conf, the job's conf, the stage override.
        conf = dict(spark.conf) if spark else {}
        conf.update(job.conf)
        if override:
            conf.update(override.conf)
        name = job_name(ctx, release.name, job, version)
        ckpt = rollout.checkpoints.get(job.name) or checkpoint_dir(
            ctx, release.name, job, version, root
        )
        args = [
            "--bootstrap-servers",
            ctx.spec.kafka.bootstrap_servers if ctx.spec.kafka else "",
            "--topic",
            ",".join(topic_name(ctx, s.topic) for s in job.sources),
            "--table",
            ",".join(physical_table(ctx, release, s.table, version) for s in job.sinks),
            "--checkpoint",
            ckpt,
            "--trigger",
            job.trigger,
            "--starting-offsets",
            rollout.start_offsets.get(job.name, job.sources[0].starting_offsets),
            "--query-name",
            name,
            "--version",
            version,
            *(TAKEOVER if job.name in rollout.checkpoints else []),
            *registry_args(release, ctx, job),
            *job.args,
        ]
        out.append(
            StreamingJobResource(
                name=name,
                owner=owner,
                version=version,
                entrypoint=job.entrypoint,
                entrypoint_digest=digest(code),
                args=args,
                conf=conf,
                checkpoint=ckpt,
                strategy=job.strategy.value,
            )
        )
    return out


def registry_args(release: PipelineRelease, ctx: StageContext, job: StreamingJobSpec) -> list[str]:
    """``--schema-registry URL --subject <topic>-value`` when the environment hands its registry to
    jobs and the job's first source topic has a ``valueSchema``. The subject is the manifest's topic
    name, without the stage's prefix (``controller.source.schema_history``); the token is not an
    argument: the runner puts it in the job's environment."""
    registry = ctx.spec.schema_registry
    first = job.sources[0].topic
    declared = next((t for t in release.spec.topics if t.name == first), None)
    if registry is None or declared is None or declared.value_schema is None:
        return []
    return ["--schema-registry", registry.url, "--subject", f"{first}-value"]


def _views(
    release: PipelineRelease, ctx: StageContext, owner: Owner, serving: str, rollout: RolloutInputs
) -> list[ViewResource]:
    """The serving views, pointing at the serving version's tables (stitched as the rollout says)."""
    return [
        ViewResource(
            name=table_name(ctx, v.name),
            owner=owner,
            target=physical_table(ctx, release, v.table, serving),
            segments=rollout.view_segments.get(v.name, []),
            key_split=rollout.key_splits.get(v.name),
        )
        for v in release.spec.views
    ]


def _dags(release: PipelineRelease, ctx: StageContext, read: Reader, owner: Owner) -> list[DagResource]:
    """The release's Airflow DAGs, one DAG id per stage, with the manifest's schedule if it sets one."""
    out: list[DagResource] = []
    for d in release.spec.dags:
        src = read(d.path)
        out.append(
            DagResource(
                name=dag_id(ctx, d.id),
                owner=owner,
                file_name=f"{dag_id(ctx, d.id)}.py",
                source_digest=digest(src),
                version=release.spec.version,
                paused=False,
                source=src.decode("utf-8"),
                schedule_managed=d.schedule_managed,
                schedule=d.schedule,
            )
        )
    return out
