"""Building an audit record for one run: code digests, schema fingerprints, lineage and verdicts.

Compliance asks, for every production run, which code version, which schema versions and which
data lineage were involved. ``build_record`` gathers them from the release and the repository at
the run's commit (through ``read``), so the engine only says what happened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from controller.audit.ledger import Artifact, AuditRecord, GateVerdict, Lineage, SchemaRef
from controller.model.errors import PipectlError
from controller.model.manifest import PipelineRelease
from controller.obs.logging import redact
from controller.plan.actions import Plan
from controller.plan.desired import StageContext, digest, physical_table, table_name, topic_name
from controller.plan.resources import (
    DagResource,
    StreamingJobResource,
    TableResource,
    TopicResource,
    TransformResource,
    ViewResource,
)
from controller.plan.transforms import transform_datasets, transform_lineage

log = structlog.get_logger(__name__)

Reader = Callable[[str], bytes]


def manifest_digest(rel: PipelineRelease) -> str:
    return digest(rel.model_dump_json(by_alias=True).encode())


def fingerprint(schema_text: bytes) -> str:
    """Parsing Canonical Form fingerprint for Avro (sha256), or sha256 of the text otherwise."""
    try:
        import avro.schema

        canonical = avro.schema.parse(schema_text.decode("utf-8")).canonical_form
        return digest(canonical.encode())
    except Exception:
        return digest(schema_text)


@dataclass
class RunFacts:
    """What happened in one run, as the engine knows it."""

    kind: str
    run_id: str
    commit: str | None
    outcome: str
    started: datetime
    finished: datetime
    instance: str
    plan: Plan | None = None
    actions: list[str] = field(default_factory=list)
    gates: Sequence[GateVerdict] = ()
    message: str = ""
    reason: str | None = None
    actor: str = "pipectl-controller"
    details: dict[str, Any] = field(default_factory=dict)
    """Structured facts of the kind (a rollback: ``rollback_details``)."""


def restored_item(resource: Any) -> dict[str, Any]:
    """One resource a restore left at its known-good state, in a few words: kind (``streamingJob``,
    ``view``, …), physical name, and what identifies the known good (a job's version and whether it
    runs, a view's table and segments, a DAG's version, a topic's partitions and config, a table's
    version and columns)."""
    kind = str(resource.kind)
    item: dict[str, Any] = {"kind": kind[:1].lower() + kind[1:], "name": resource.name}
    if isinstance(resource, StreamingJobResource):
        item.update(
            version=resource.version, running=resource.running, entrypointDigest=resource.entrypoint_digest
        )
    elif isinstance(resource, ViewResource):
        item["target"] = resource.target
        if resource.segments:
            item["segments"] = [{"table": s.table, "since": s.since} for s in resource.segments]
    elif isinstance(resource, DagResource):
        item.update(version=resource.version, sourceDigest=resource.source_digest)
    elif isinstance(resource, TopicResource):
        item.update(partitions=resource.partitions, config=dict(resource.config))
    elif isinstance(resource, TableResource):
        item["version"] = resource.properties.get("pipectl.version")
        item["columns"] = [c.name for c in resource.columns]
    elif isinstance(resource, TransformResource):
        item["digest"] = resource.digest
    return item


def rollback_details(
    trigger: str,
    failed_version: str,
    restored_version: str | None,
    proved: Sequence[Any] | None,
    stopped: Sequence[str],
) -> dict[str, Any]:
    """What a rollback record says it did: the version rolled back (``from``), the known good
    restored (``to``; None when nothing was good before), every resource of the known good at the
    stage that the restore proved live as the known good wants it (``restored``: jobs, views, DAGs,
    topics, tables, databases; empty unless proved), and the failed version's jobs it stopped."""
    return {
        "trigger": trigger,
        "from": failed_version,
        "to": restored_version,
        "restored": [restored_item(r) for r in proved or ()],
        "stopped": list(stopped),
    }


def code_artifacts(rel: PipelineRelease, read: Reader) -> list[Artifact]:
    out: list[Artifact] = []
    s = rel.spec
    for p in (
        [j.entrypoint for j in s.streaming_jobs] + [d.path for d in s.dags] + [t.sql for t in s.transforms]
    ):
        try:
            out.append(Artifact(path=p, digest=digest(read(p))))
        except OSError:
            out.append(Artifact(path=p, digest="missing"))
    return out


def schema_refs(rel: PipelineRelease, read: Reader) -> list[SchemaRef]:
    out = []
    for s in rel.spec.schemas:
        try:
            text = read(s.path)
        except OSError:
            continue
        out.append(
            SchemaRef(
                name=s.name,
                version=rel.spec.version,
                fingerprint=fingerprint(text),
                compatibility=str(s.compatibility),
            )
        )
    return out


def lineage_of(
    rel: PipelineRelease, ctx: StageContext, read: Reader, upstream: Sequence[PipelineRelease]
) -> Lineage:
    lineage = Lineage()
    for j in rel.spec.streaming_jobs:
        lineage.inputs += [f"kafka:{topic_name(ctx, s.topic)}" for s in j.sources]
        lineage.outputs += [f"hive:{physical_table(ctx, rel, s.table, rel.spec.version)}" for s in j.sinks]
    for v in rel.spec.views:
        if not ctx.is_canary:
            lineage.outputs.append(f"hive:{table_name(ctx, v.name)}")
    if rel.spec.transforms:
        try:
            inputs, outputs = transform_datasets(rel, ctx, read, upstream=list(upstream))
            lineage.inputs += [i for i in inputs if i not in lineage.inputs]
            lineage.outputs += [o for o in outputs if o not in lineage.outputs]
            lineage.columns = transform_lineage(rel, ctx, read, upstream=list(upstream))
        except PipectlError as e:
            log.warning("transform lineage unavailable", release=rel.name, error=str(e))
    return lineage


def build_record(
    rel: PipelineRelease,
    stage: str,
    run: RunFacts,
    read: Reader,
    ctx: StageContext | None = None,
    upstream: Sequence[PipelineRelease] = (),
) -> AuditRecord:
    return AuditRecord(
        run_id=run.run_id,
        kind=run.kind,  # type: ignore[arg-type]
        release=rel.name,
        version=rel.spec.version,
        stage=stage,
        git_commit=run.commit,
        manifest_digest=manifest_digest(rel),
        code=code_artifacts(rel, read),
        schemas=schema_refs(rel, read),
        lineage=lineage_of(rel, ctx, read, upstream) if ctx is not None else Lineage(),
        plan_summary=[a.describe() for a in run.plan.actions] if run.plan else [],
        actions=list(run.actions),
        # error text may carry a secret: the ledger is append-only, so redact before it is written
        gates=[g.model_copy(update={"message": redact(g.message)}) for g in run.gates],
        outcome=run.outcome,
        reason=run.reason,
        message=redact(run.message),
        actor=run.actor,
        controller_instance=run.instance,
        started_at=run.started,
        finished_at=run.finished,
        details=dict(run.details),
    )
