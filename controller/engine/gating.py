"""The engine side of gates: a real ``GateData`` over one stage's backends and the state store.

The gate logic itself is pure (``controller.rollout.gates``); this module only answers its
questions: Presto and PromQL queries, job progress from the Spark runner, Kafka end and committed
offsets, earlier schema versions and approvals from the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from controller.adapters._retry import DeadlineExceeded, deadline
from controller.audit.ledger import GateVerdict
from controller.engine.backends import StagePorts, progress_view
from controller.engine.gate_request import GateRequest
from controller.model.errors import PermanentBackendError, TransientBackendError
from controller.model.identifiers import semver_key
from controller.model.reasons import Reason, Verdict
from controller.plan.resources import ResourceKind
from controller.rollout.context import GateContext, JobNotFound, ProgressView, default_jobs
from controller.rollout.gates import applicable, evaluate
from controller.store.db import Store
from controller.store.rollout import RolloutStore

GATE_QUERY_DEADLINE = 120.0
"""Seconds one gate query may take, retries included; past it the gate is inconclusive."""


class StageGateData:
    def __init__(
        self, be: StagePorts, store: Store, current_version: str, query_deadline: float = GATE_QUERY_DEADLINE
    ):
        self.be = be
        self.store = store
        self.current_version = current_version
        self.query_deadline = query_deadline
        self.unavailable: set[str] = set()
        """Backends a question could not reach (an outage, not a slow or refused query)."""

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        try:
            yield
        except TransientBackendError as e:
            if e.reason is Reason.BACKEND_UNAVAILABLE and not isinstance(e, DeadlineExceeded):
                self.unavailable.add(e.backend)
            raise

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        # DeadlineExceeded is a TransientBackendError: the gate reads it as inconclusive
        with self._reaching(), deadline(self.query_deadline):
            return self.be.presto.query(sql, op="gate")

    def job_progress(self, job_name: str) -> ProgressView | None:
        with self._reaching():
            live = self.be.spark.observe(ResourceKind.STREAMING_JOB, [job_name]).get(job_name)
            if live is None:
                raise JobNotFound(job_name)
            return progress_view(self.be.spark.progress(job_name))

    def end_offsets(self, topic: str) -> dict[int, int]:
        with self._reaching():
            return self.be.kafka.end_offsets(topic)

    def prometheus_query(self, promql: str, at: datetime) -> list[float]:
        """``GateData.prometheus_query``: the values of an instant PromQL query."""
        client = self.be.prometheus
        if client is None:
            raise PermanentBackendError("prometheus", "the stage's Environment sets no prometheus endpoint")
        with self._reaching(), deadline(self.query_deadline):
            return [v for _labels, v in client.query(promql, at)]

    def committed_offsets(self, group: str) -> dict[str, dict[int, int]]:
        """``GateData.committed_offsets``: a consumer group's committed offsets."""
        with self._reaching():
            return self.be.kafka.committed_offsets(group)

    def live_schema(self, release: str, schema: str) -> list[str]:
        """Earlier promoted versions' texts of ``schema``, newest first."""
        found = RolloutStore(self.store).history(release).schemas.get(schema, {})
        cur = semver_key(self.current_version)
        versions = sorted(found, key=semver_key, reverse=True)
        return [found[v] for v in versions if semver_key(v) < cur]

    def approval(self, release: str, stage: str, version: str, revision: str | None) -> str | None:
        a = self.store.approval(release, stage, version, revision)
        return str(a["approver"]) if a else None


class Gates:
    """``GateRunner`` for the reconciler."""

    def __init__(self, store: Store):
        self.store = store

    def evaluate(self, req: GateRequest) -> list[GateVerdict]:
        rel = req.release
        tables = dict(req.tables)
        baseline_jobs: dict[str, str] = {}
        if req.baseline_version is not None:
            target = req.ctx
            baseline_jobs = default_jobs(rel, target, req.baseline_version)
        # the version's content as deployed (a pass with other content is VersionReused)
        recorded = RolloutStore(self.store).history(rel.name).revisions.get(rel.spec.version)
        ctx = GateContext(
            release=rel,
            stage=req.stage,
            stage_ctx=req.ctx,
            now=req.now,
            schemas=req.schema_texts,
            tables=tables,
            jobs=req.jobs,
            baseline_tables=req.baseline_tables,
            baseline_jobs=baseline_jobs,
            canary_tables=dict(req.tables),
            baseline_version=req.baseline_version,
            revision=recorded.digest if recorded else None,
            canary_keys=req.canary_keys,
            catalogs=req.catalogs,
        )
        data = StageGateData(req.backends, self.store, rel.spec.version)
        out = []
        for gate in rel.spec.rollout.gates:
            if applicable(gate, req.stage) and (req.only is None or gate.name in req.only):
                data.unavailable.clear()
                v = evaluate(gate, ctx, data)
                verdict = GateVerdict.model_validate(v.model_dump(mode="json"))
                if verdict.verdict == Verdict.INCONCLUSIVE and data.unavailable:
                    unreached = {"unavailable": sorted(data.unavailable)}
                    verdict = verdict.model_copy(update={"evidence": {**verdict.evidence, **unreached}})
                out.append(verdict)
        return out
