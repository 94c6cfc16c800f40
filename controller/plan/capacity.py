"""Capacity planning, pure arithmetic: from a measured per-core throughput and the seed's scale
figures to executors, Kafka partitions, trigger interval / batch size, and backfill chunking.

Every number the plan uses is an input with a stated default (``CapacityInputs``); the plan lists
them back as assumptions. The model, deliberately simple:

Streaming ingest
    ``cores = ceil(peak / (per_core * target_utilization))``: at peak the job uses at most
    ``target_utilization`` of its cores; the rest drains backlogs (restarts, deploys, a green
    version replaying its window) — the catch-up time of an outage of ``outage_minutes`` is
    ``backlog / spare``. Executors: ``ceil(cores / cores_per_executor)``.
Kafka partitions
    at least one per core (a micro-batch reads partitions in parallel, one task each), at least
    ``ingress / partition_mb_per_second``, rounded up to a multiple of ``partition_multiple`` (so
    they spread evenly over brokers and executors).
Trigger and batch size
    an event waits for the next trigger (up to ``T``), then for its batch: ``overhead + T * u``
    where ``u = peak / (cores * per_core)`` and ``overhead`` is the fixed cost of a micro-batch
    (the sink's metastore round trips, planning); then Presto must see it (``visibility``).
    ``P95 ~ 0.95 T + overhead + u T + visibility``. The plan picks the largest trigger among
    ``trigger_candidates`` whose estimate stays within ``p95_seconds * latency_safety`` (larger
    batches amortize the overhead; the safety factor leaves room for a restart or a slow batch)
    and whose batch finishes within the trigger. ``maxOffsetsPerTrigger`` caps a catch-up batch at
    ``catchup_batch_factor`` normal batches so catching up never makes one batch slow.
Backfill
    ``replay_tb_per_day`` of raw events must be re-processed within ``backfill_window_hours`` of
    each day. Cores: ``rate / (per_core * backfill_efficiency)``. A chunk is a stretch of history
    (an hour of history holds ``peak * average_to_peak * 3600`` events), the longest divisor of a
    day that runs within ``chunk_target_minutes`` on ``chunk_cores`` cores (a failed chunk costs
    that much again; chunks align with ``dt`` partitions); concurrency is
    ``ceil(cores / chunk_cores)``.

Nothing here reads files or talks to a backend: ``controller.cli.capacity`` supplies the
measured figures (``bench/results/*.json``) and prints the plan.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

DAY_DIVISORS_HOURS = (24.0, 12.0, 8.0, 6.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.25)
DEFAULT_PER_CORE_ROWS_PER_SECOND = 50_000.0
DEFAULT_BATCH_OVERHEAD_SECONDS = 3.0


class CapacityError(ValueError):
    """Inputs that make no plan (non-positive rates, utilization outside (0, 1], ...)."""


@dataclass(frozen=True)
class CapacityInputs:
    # --- the seed's figures
    events_per_second: float = 1.2e6
    replay_tb_per_day: float = 40.0
    p95_seconds: float = 120.0
    # --- measured (bench) or assumed
    per_core_rows_per_second: float = DEFAULT_PER_CORE_ROWS_PER_SECOND
    batch_overhead_seconds: float = DEFAULT_BATCH_OVERHEAD_SECONDS
    visibility_seconds: float = 2.0
    # --- assumptions
    event_bytes: float = 200.0
    compression_ratio: float = 4.0
    target_utilization: float = 0.6
    cores_per_executor: int = 4
    partition_mb_per_second: float = 10.0
    partition_multiple: int = 12
    latency_safety: float = 0.5
    trigger_candidates: tuple[float, ...] = (5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0)
    catchup_batch_factor: float = 2.0
    outage_minutes: float = 5.0
    average_to_peak: float = 0.6
    backfill_window_hours: float = 20.0
    backfill_efficiency: float = 1.0
    chunk_cores: int = 32
    chunk_target_minutes: float = 30.0
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        positive = (
            "events_per_second", "replay_tb_per_day", "p95_seconds", "per_core_rows_per_second",
            "event_bytes", "compression_ratio", "cores_per_executor", "partition_mb_per_second",
            "partition_multiple", "backfill_window_hours", "backfill_efficiency", "chunk_cores",
            "chunk_target_minutes", "catchup_batch_factor",
        )
        bad = [k for k in positive if not getattr(self, k) > 0]
        if bad:
            raise CapacityError(f"must be positive: {', '.join(bad)}")
        fractions = ("target_utilization", "latency_safety", "average_to_peak")
        for name, v in ((n, getattr(self, n)) for n in fractions):
            if not 0 < v <= 1:
                raise CapacityError(f"{name} must be in (0, 1], is {v}")
        if self.batch_overhead_seconds < 0 or self.visibility_seconds < 0 or self.outage_minutes < 0:
            raise CapacityError("overhead, visibility and outage must not be negative")
        if self.backfill_window_hours > 24:
            raise CapacityError("backfill_window_hours is per day: at most 24")
        if not self.trigger_candidates or min(self.trigger_candidates) <= 0:
            raise CapacityError("trigger_candidates must be positive seconds")


@dataclass(frozen=True)
class TriggerOption:
    trigger_seconds: float
    batch_events: int
    batch_seconds: float
    p95_estimate_seconds: float
    stable: bool
    within_budget: bool


def round_up(n: float, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)


def trigger_options(inp: CapacityInputs, cores: int) -> list[TriggerOption]:
    u = inp.events_per_second / (cores * inp.per_core_rows_per_second)
    budget = inp.p95_seconds * inp.latency_safety
    out = []
    for t in sorted(inp.trigger_candidates):
        batch = inp.batch_overhead_seconds + t * u
        p95 = 0.95 * t + batch + inp.visibility_seconds
        out.append(TriggerOption(t, int(inp.events_per_second * t), round(batch, 2), round(p95, 1),
                                 stable=batch <= t, within_budget=p95 <= budget))
    return out


def choose_trigger(options: list[TriggerOption]) -> tuple[TriggerOption, bool]:
    """The largest stable trigger within the budget; else the stable one with the lowest estimate
    (False: the budget is not met). None of them stable: the largest (False)."""
    good = [o for o in options if o.stable and o.within_budget]
    if good:
        return max(good, key=lambda o: o.trigger_seconds), True
    stable = [o for o in options if o.stable]
    if stable:
        return min(stable, key=lambda o: o.p95_estimate_seconds), False
    return max(options, key=lambda o: o.trigger_seconds), False


def chunk_hours(events_per_hour: float, chunk_events: float) -> float:
    """The largest divisor of a day (in hours) whose chunk holds at most ``chunk_events``."""
    for h in DAY_DIVISORS_HOURS:
        if events_per_hour * h <= chunk_events:
            return h
    return DAY_DIVISORS_HOURS[-1]


def plan(inp: CapacityInputs) -> dict[str, Any]:
    """The capacity plan as plain data (printed by the CLI, or as JSON)."""
    warnings: list[str] = []
    cores, executors = _ingest_cores(inp)
    inputs = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(inp).items() if k != "sources"}
    return {
        "inputs": inputs,
        "sources": dict(inp.sources),
        "streaming": _streaming_plan(inp, cores, executors),
        "kafka": _kafka_plan(inp, cores),
        "latency": _latency_plan(inp, cores, warnings),
        "backfill": _backfill_plan(inp, warnings),
        "assumptions": assumptions(inp),
        "warnings": warnings,
    }


def _ingest_cores(inp: CapacityInputs) -> tuple[int, int]:
    """(cores, executors) of the streaming job: whole executors, at most ``target_utilization`` of
    the cores busy at peak."""
    cores = math.ceil(inp.events_per_second / (inp.per_core_rows_per_second * inp.target_utilization))
    executors = math.ceil(cores / inp.cores_per_executor)
    return executors * inp.cores_per_executor, executors


def _ingress_mb(inp: CapacityInputs) -> float:
    """Peak ingress in MB/s, uncompressed."""
    return inp.events_per_second * inp.event_bytes / 1e6


def _streaming_plan(inp: CapacityInputs, cores: int, executors: int) -> dict[str, Any]:
    eps = inp.events_per_second
    ingress_mb = _ingress_mb(inp)
    capacity = cores * inp.per_core_rows_per_second
    spare = capacity - eps
    backlog = eps * inp.outage_minutes * 60
    catchup_s = backlog / spare if spare > 0 else math.inf
    return {
        "peak_events_per_second": eps,
        "ingress_mb_per_second_uncompressed": round(ingress_mb, 1),
        "ingress_mb_per_second_compressed": round(ingress_mb / inp.compression_ratio, 1),
        "cores": cores,
        "executors": executors,
        "cores_per_executor": inp.cores_per_executor,
        "capacity_events_per_second": round(capacity),
        "utilization_at_peak": round(eps / capacity, 3),
        "catchup_seconds_after_outage": round(catchup_s, 1) if math.isfinite(catchup_s) else None,
    }


def _kafka_plan(inp: CapacityInputs, cores: int) -> dict[str, Any]:
    ingress_mb = _ingress_mb(inp)
    by_cores = cores
    by_bytes = math.ceil(ingress_mb / inp.partition_mb_per_second)
    return {
        "partitions": round_up(max(by_cores, by_bytes), inp.partition_multiple),
        "partitions_for_parallelism": by_cores,
        "partitions_for_throughput": by_bytes,
        "retention_bytes_per_day_compressed": round(ingress_mb / inp.compression_ratio * 1e6 * 86400),
    }


def _latency_plan(inp: CapacityInputs, cores: int, warnings: list[str]) -> dict[str, Any]:
    """The trigger and batch size (a warning when no trigger meets the P95 budget)."""
    capacity = cores * inp.per_core_rows_per_second
    options = trigger_options(inp, cores)
    chosen, met = choose_trigger(options)
    if not met:
        warnings.append(
            f"no trigger among {list(inp.trigger_candidates)} keeps the P95 estimate within "
            f"{inp.p95_seconds * inp.latency_safety:.0f}s ({inp.latency_safety:g} x {inp.p95_seconds:g}s) "
            f"with {cores} cores: add cores or cut the per-batch overhead ({inp.batch_overhead_seconds:g}s)"
        )
    max_offsets = int(chosen.batch_events * inp.catchup_batch_factor)
    catchup_batch_s = inp.batch_overhead_seconds + max_offsets / capacity
    return {
        "trigger_seconds": chosen.trigger_seconds,
        "batch_events": chosen.batch_events,
        "batch_seconds_estimate": chosen.batch_seconds,
        "p95_estimate_seconds": chosen.p95_estimate_seconds,
        "p95_budget_seconds": inp.p95_seconds,
        "design_p95_seconds": inp.p95_seconds * inp.latency_safety,
        "meets_budget": met,
        "max_offsets_per_trigger": max_offsets,
        "catchup_batch_seconds_estimate": round(catchup_batch_s, 1),
        "options": [asdict(o) for o in options],
    }


def _backfill_plan(inp: CapacityInputs, warnings: list[str]) -> dict[str, Any]:
    """Backfill cores and chunking (warnings when a chunk runs too long or is shorter than a day)."""
    pc = inp.per_core_rows_per_second
    bytes_day = inp.replay_tb_per_day * 1e12
    events_day = bytes_day / inp.event_bytes
    bf_rate = events_day / (inp.backfill_window_hours * 3600)
    bf_cores = math.ceil(bf_rate / (pc * inp.backfill_efficiency))
    chunk_rate = pc * inp.backfill_efficiency * inp.chunk_cores
    chunk_events_target = chunk_rate * inp.chunk_target_minutes * 60
    # A chunk is a stretch of history: an hour of it holds what the stream ingests in an hour.
    history_hour = inp.events_per_second * inp.average_to_peak * 3600
    hours = chunk_hours(history_hour, chunk_events_target)
    chunk_events = history_hour * hours
    chunk_minutes = chunk_events / chunk_rate / 60
    concurrency = math.ceil(bf_cores / inp.chunk_cores)
    if chunk_minutes > inp.chunk_target_minutes:
        warnings.append(
            f"even {hours * 60:.0f}-minute chunks of history take {chunk_minutes:.0f} min on "
            f"{inp.chunk_cores} cores: give chunks more cores"
        )
    if hours < 24:
        warnings.append(
            f"chunks of {hours:g} h of history: pipectl backfill plans one chunk per dt day, so at this "
            "volume the backfilled table and its DAG need an hour (or finer) partition as well"
        )
    return {
        "tb_per_day": inp.replay_tb_per_day,
        "events_per_day": round(events_day),
        "events_per_second_needed": round(bf_rate),
        "cores": bf_cores,
        "executors": math.ceil(bf_cores / inp.cores_per_executor),
        "history_days_per_day": round(events_day / (history_hour * 24), 2),
        "chunk_hours_of_history": hours,
        "chunk_events": round(chunk_events),
        "chunk_gb_uncompressed": round(chunk_events * inp.event_bytes / 1e9, 1),
        "chunk_minutes_estimate": round(chunk_minutes, 1),
        "chunk_cores": inp.chunk_cores,
        "concurrency": concurrency,
        "chunks_per_day": math.ceil(events_day / chunk_events),
    }


def assumptions(inp: CapacityInputs) -> list[str]:
    src = inp.sources
    return [
        f"peak ingress {inp.events_per_second:,.0f} events/s, replay {inp.replay_tb_per_day:g} TB/day, "
        f"P95 budget {inp.p95_seconds:g}s (seed)",
        f"per-core throughput {inp.per_core_rows_per_second:,.0f} events/s/core "
        f"({src.get('per_core_rows_per_second', 'assumed')}): the whole job — Kafka read, Avro decode, "
        "1-minute aggregation, idempotent merge + partition swap",
        f"fixed cost per micro-batch {inp.batch_overhead_seconds:g}s "
        f"({src.get('batch_overhead_seconds', 'assumed')}); Presto sees a swapped partition within "
        f"{inp.visibility_seconds:g}s (metastore cache off, query time)",
        f"average event {inp.event_bytes:g} bytes serialized (Avro, with tags), compression "
        f"{inp.compression_ratio:g}x in Kafka (lz4) and the lake",
        f"at most {inp.target_utilization:.0%} utilization at peak (headroom "
        f"{1 / inp.target_utilization:.2f}x for catch-up after restarts, deploys, blue/green replays)",
        f"{inp.cores_per_executor} cores per executor; {inp.partition_mb_per_second:g} MB/s per Kafka "
        f"partition; partition counts rounded up to a multiple of {inp.partition_multiple}",
        f"design P95 = {inp.latency_safety:g} x budget; P95 ~ 0.95 x trigger + batch time + visibility; "
        f"a catch-up batch holds at most {inp.catchup_batch_factor:g} normal batches",
        f"backfills run {inp.backfill_window_hours:g} h per day at {inp.backfill_efficiency:g} x the "
        f"streaming per-core rate; history averages {inp.average_to_peak:.0%} of peak; a chunk (a divisor "
        f"of a day of history) runs at most ~{inp.chunk_target_minutes:g} min on {inp.chunk_cores} cores",
    ]
