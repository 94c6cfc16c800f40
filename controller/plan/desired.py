"""From a release and a stage to concrete desired resources (stage prefixes, scoped names).

Pure: file contents come through the ``read`` callable, so the same inputs always give the same
resources. Canary stages (``canaryOf``) run on their target's endpoints and inputs: they declare
no topics or serving views of their own, and write shadow tables suffixed ``__canary``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from controller.model.manifest import Environment, EnvironmentSpec, PipelineRelease
from controller.plan.resources import (
    Column,
    DagResource,
    DatabaseResource,
    Migration,
    Owner,
    StreamingJobResource,
    TableResource,
    TopicResource,
    ViewResource,
)

CANARY_SUFFIX = "__canary"
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


def topic_name(ctx: StageContext, logical: str) -> str:
    return ctx.topic_prefix + logical


def table_name(ctx: StageContext, logical: str, *, shadow: bool = False) -> str:
    db, table = logical.split(".", 1)
    suffix = CANARY_SUFFIX if shadow and ctx.is_canary else ""
    return f"{ctx.db_prefix}{db}.{table}{suffix}"


def database_name(ctx: StageContext, logical_db: str) -> str:
    return ctx.db_prefix + logical_db


def dag_id(ctx: StageContext, logical: str) -> str:
    return f"{logical}__{ctx.stage}"


def job_name(ctx: StageContext, release: str, job: str) -> str:
    return f"{ctx.stage}-{release}-{job}"


def checkpoint_dir(ctx: StageContext, release: str, job: str, root: str) -> str:
    return f"{root.rstrip('/')}/{ctx.stage}/{release}/{job}"


def desired_resources(
    release: PipelineRelease,
    ctx: StageContext,
    read: Reader,
    checkpoint_root: str = ".pipectl/checkpoints",
) -> list[
    DatabaseResource | TopicResource | TableResource | ViewResource | DagResource | StreamingJobResource
]:
    spec = release.spec
    owner = Owner(release=release.name, version=spec.version)
    override = spec.rollout.overrides.get(ctx.stage)
    out: list[
        DatabaseResource | TopicResource | TableResource | ViewResource | DagResource | StreamingJobResource
    ] = []

    dbs = sorted({t.name.split(".")[0] for t in spec.tables} | {v.name.split(".")[0] for v in spec.views})
    out += [DatabaseResource(name=database_name(ctx, db), owner=owner) for db in dbs]

    if not ctx.is_canary:
        for t in spec.topics:
            partitions, rf, config = t.partitions, t.replication_factor, dict(t.config)
            if override and t.name in override.topics:
                o = override.topics[t.name]
                partitions = int(o.get("partitions", partitions))
                rf = int(o.get("replicationFactor", rf))
                config.update({k: str(v) for k, v in (o.get("config") or {}).items()})
            out.append(
                TopicResource(
                    name=topic_name(ctx, t.name),
                    owner=owner,
                    partitions=partitions,
                    replication_factor=rf,
                    config=config,
                )
            )

    for tb in spec.tables:
        props = dict(tb.properties)
        props.update({"pipectl.release": release.name, "pipectl.version": spec.version})
        out.append(
            TableResource(
                name=table_name(ctx, tb.name, shadow=True),
                owner=owner,
                columns=[Column(name=c.name, type=c.type) for c in tb.columns],
                partition_columns=[Column(name=c.name, type=c.type) for c in tb.partitioned_by],
                format=tb.format.value,
                properties=props,
                migrations=[Migration(op=m.op, column=m.column, to=m.to) for m in tb.migrations],
            )
        )

    for job in spec.streaming_jobs:
        code = read(job.entrypoint)
        conf = dict(job.conf)
        if override:
            conf.update(override.conf)
        name = job_name(ctx, release.name, job.name)
        ckpt = checkpoint_dir(ctx, release.name, job.name, checkpoint_root)
        args = [
            "--bootstrap-servers",
            ctx.spec.kafka.bootstrap_servers if ctx.spec.kafka else "",
            "--topic",
            ",".join(topic_name(ctx, s.topic) for s in job.sources),
            "--table",
            ",".join(table_name(ctx, s.table, shadow=True) for s in job.sinks),
            "--checkpoint",
            ckpt,
            "--trigger",
            job.trigger,
            "--starting-offsets",
            job.sources[0].starting_offsets,
            "--query-name",
            name,
            "--version",
            spec.version,
            *job.args,
        ]
        out.append(
            StreamingJobResource(
                name=name,
                owner=owner,
                version=spec.version,
                entrypoint=job.entrypoint,
                entrypoint_digest=digest(code),
                args=args,
                conf=conf,
                checkpoint=ckpt,
                strategy=job.strategy.value,
            )
        )

    if not ctx.is_canary:
        for v in spec.views:
            out.append(
                ViewResource(name=table_name(ctx, v.name), owner=owner, target=table_name(ctx, v.table))
            )
        for d in spec.dags:
            src = read(d.path)
            out.append(
                DagResource(
                    name=dag_id(ctx, d.id),
                    owner=owner,
                    file_name=f"{dag_id(ctx, d.id)}.py",
                    source_digest=digest(src),
                    version=spec.version,
                    paused=False,
                    source=src.decode("utf-8"),
                )
            )
    return out
