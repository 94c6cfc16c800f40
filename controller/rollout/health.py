"""One health function for streaming jobs: what gates, soak, status and metrics all ask.

``job_health(progress, end_offsets, now)`` turns a job's latest progress (``ProgressView``) and
Kafka's end offsets for its source topics into figures — backlog in records and seconds,
event-time freshness, the age of the progress report — the way gitops-engine's ``pkg/health``
gives every consumer the same answer for a resource. Pure: ``now`` is an argument.

Lag in records is the end offsets minus the offsets the job has processed, summed over the
partitions of its source topics. Lag in seconds is that backlog divided by the input rate (the
arrival rate while the job keeps up); with no input in the last batch, every waiting record arrived
after that batch planned its offsets, so ``now - progress time + batch duration`` bounds its age.
Event-time freshness (``now - watermark``) trails the newest event by the job's allowed lateness by
design; it feeds the freshness SLO, not the streaming-health gate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from controller.rollout.context import ProgressView, as_utc

MIN_SOAK_BATCHES = 2
"""Gates judge a new job after this many micro-batches (the first carry JVM warm-up and no rates)."""


@dataclass(frozen=True)
class JobHealth:
    batch_id: int
    progress_age_seconds: float
    lag_records: int
    lag_seconds: float
    lag_basis: str
    input_rows_per_second: float
    processed_rows_per_second: float
    batch_duration_seconds: float
    freshness_seconds: float | None
    lag_records_by_topic: dict[str, int] = field(default_factory=dict)

    @property
    def catching_up(self) -> bool:
        return self.input_rows_per_second > 0 and self.processed_rows_per_second > self.input_rows_per_second


def job_health(
    progress: ProgressView, end_offsets: Mapping[str, Mapping[int, int]], now: datetime
) -> JobHealth:
    """Figures of one job from its latest progress and its source topics' end offsets."""
    now = as_utc(now)
    age = (now - as_utc(progress.timestamp)).total_seconds()
    per_topic: dict[str, int] = {}
    for topic, ends in end_offsets.items():
        done = progress.source_end_offsets.get(topic, {})
        per_topic[topic] = sum(max(0, end - done.get(p, 0)) for p, end in ends.items())
    lag_records = sum(per_topic.values())
    input_rate = progress.input_rows_per_second or 0.0
    processed_rate = progress.processed_rows_per_second or 0.0
    duration = (progress.batch_duration_ms or 0.0) / 1000.0
    if lag_records == 0:
        lag_seconds, basis = 0.0, "no backlog"
    elif input_rate > 0:
        lag_seconds, basis = lag_records / input_rate, "backlog / input rate"
    else:
        lag_seconds, basis = max(0.0, age) + duration, "no input in the last batch: age bound"
    freshness = None
    if progress.watermark is not None:
        freshness = (now - as_utc(progress.watermark)).total_seconds()
    return JobHealth(
        batch_id=progress.batch_id,
        progress_age_seconds=age,
        lag_records=lag_records,
        lag_seconds=lag_seconds,
        lag_basis=basis,
        input_rows_per_second=input_rate,
        processed_rows_per_second=processed_rate,
        batch_duration_seconds=duration,
        freshness_seconds=freshness,
        lag_records_by_topic=per_topic,
    )


def soak_wait(progress: ProgressView | None, name: str) -> str:
    """Why a new job has not soaked yet ("" once it ran ``MIN_SOAK_BATCHES`` batches with input).

    Judging an empty table right after a deploy would fail data gates for no fault of the
    version, so soak is measured in data, not time.
    """
    if progress is not None and (progress.num_input_rows or 0) > 0 and progress.batch_id >= MIN_SOAK_BATCHES:
        return ""
    done = "no batch" if progress is None else f"batch {progress.batch_id}"
    return f"{name} at {done}; waiting for batch {MIN_SOAK_BATCHES} with input"
