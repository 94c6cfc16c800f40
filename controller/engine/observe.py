"""Per-pass health metrics of a stage's streaming jobs, from the one health function.

After each stage's step the reconciler exports, for every streaming job deployed at the stage,
consumer lag in seconds and event-time freshness (``rollout.health.job_health``), and the records
it could not decode (its status file's count, when it reports one), so the SLO
burn-rate alerts and the Grafana panels see what the gates see. A backend that cannot answer skips
the figures of this pass (the series keep their last value until the next).
"""

from __future__ import annotations

import structlog

from controller.engine.backends import progress_view
from controller.engine.passes import Pass
from controller.engine.stage_ops import StageOps
from controller.model.errors import PipectlError
from controller.obs import metrics
from controller.plan.desired import job_name, topic_name
from controller.rollout.health import job_health

log = structlog.get_logger(__name__)


class StageMetrics:
    def __init__(self, ops: StageOps):
        self.ops = ops

    def export(self, p: Pass, stage: str) -> None:
        version = p.status.stages[stage].version if stage in p.status.stages else None
        if not p.rel.spec.streaming_jobs or version is None:
            return
        ctx = p.ctx(stage)
        try:
            be = self.ops.backends(ctx, None)
            now = self.ops.clock()
            for job in p.rel.spec.streaming_jobs:
                name = job_name(ctx, p.name, job, version)
                progress = progress_view(be.spark.progress(name))
                if progress is None:
                    continue
                ends = {t: be.kafka.end_offsets(t) for t in (topic_name(ctx, s.topic) for s in job.sources)}
                h = job_health(progress, ends, now)
                metrics.set_streaming_lag(p.name, stage, name, h.lag_seconds)
                if h.freshness_seconds is not None:
                    metrics.set_event_freshness(p.name, stage, name, h.freshness_seconds)
                if progress.undecodable_records is not None:
                    metrics.set_undecodable_records(p.name, stage, name, progress.undecodable_records)
        except PipectlError as e:
            log.warning("streaming metrics unavailable", release=p.name, stage=stage, error=str(e))
