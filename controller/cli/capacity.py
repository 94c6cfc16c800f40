"""``pipectl plan-capacity``: executors, Kafka partitions, trigger/batch size and backfill chunking for
the seed's scale, from a measured per-core throughput (the arithmetic: ``controller.plan.capacity``).

    pipectl plan-capacity
    pipectl plan-capacity --events-per-second 1.2e6 --replay-tb-per-day 40 --event-bytes 200 -o json

The per-core throughput comes from ``--per-core-rows-per-second``, else from the sink benchmark's
result ``bench/results/sink_throughput.json`` (``per_core_rows_per_second``: the example job with
the idempotent sink, ``bench/bench_sink.py``), else a documented default (with a warning). The
fixed cost of a micro-batch comes from ``--batch-overhead-seconds``, else from the latency
benchmark's ``bench/results/latency.json`` (median seconds of a small batch), else a default.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from controller.cli.output import output_option

RESULTS_DIR = Path(__file__).resolve().parents[2] / "bench" / "results"


def _measured(path: Path, key: str) -> tuple[float | None, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, ""
    value = data.get(key)
    if not isinstance(value, int | float) or value <= 0:
        return None, ""
    load = (data.get("machine") or {}).get("loadavg_start")
    bench = "bench/bench_latency.py" if path.stem == "latency" else "bench/bench_sink.py"
    where = f"measured {data.get('measured_at', '?')} by {bench}"
    extra = f" on {data.get('master')}" if data.get("master") else ""
    return float(value), f"{where}{extra}, load average {load}" if load else f"{where}{extra}"


def plan_capacity(
    events_per_second: float = typer.Option(1.2e6, "--events-per-second", help="Peak ingress (seed)."),
    replay_tb_per_day: float = typer.Option(40.0, "--replay-tb-per-day", help="Backfill volume (seed)."),
    event_bytes: float = typer.Option(200.0, "--event-bytes", help="Average serialized event size, bytes."),
    per_core_rows_per_second: float | None = typer.Option(
        None, "--per-core-rows-per-second", help="Events/s per core (default: the sink bench's figure)."
    ),
    p95_seconds: float = typer.Option(120.0, "--p95-seconds", help="Ingestion -> queryable P95 budget."),
    batch_overhead_seconds: float | None = typer.Option(
        None, "--batch-overhead-seconds", help="Fixed cost of a micro-batch (default: the latency bench's)."
    ),
    target_utilization: float = typer.Option(0.6, "--target-utilization", help="Max share of cores at peak."),
    cores_per_executor: int = typer.Option(4, "--cores-per-executor"),
    compression_ratio: float = typer.Option(4.0, "--compression-ratio", help="Kafka/lake compression."),
    chunk_cores: int = typer.Option(32, "--chunk-cores", help="Cores of one backfill chunk's job."),
    results: Path = typer.Option(RESULTS_DIR, "--results", help="Directory of the benchmarks' JSON results."),
    output: str = output_option("table", "json"),
) -> None:
    """Size streaming executors, Kafka partitions, trigger/batch and backfill chunks; assumptions listed."""
    from controller.plan.capacity import (
        DEFAULT_BATCH_OVERHEAD_SECONDS,
        DEFAULT_PER_CORE_ROWS_PER_SECOND,
        CapacityError,
        CapacityInputs,
        plan,
    )

    sources: dict[str, str] = {}
    notes: list[str] = []
    if per_core_rows_per_second is None:
        value, where = _measured(results / "sink_throughput.json", "per_core_rows_per_second")
        if value is None:
            per_core_rows_per_second = DEFAULT_PER_CORE_ROWS_PER_SECOND
            notes.append(
                f"no measured per-core throughput in {results / 'sink_throughput.json'} "
                f"(run bench/bench_sink.py): using the default {DEFAULT_PER_CORE_ROWS_PER_SECOND:,.0f} "
                "events/s/core"
            )
            sources["per_core_rows_per_second"] = "default, not measured"
        else:
            per_core_rows_per_second = value
            sources["per_core_rows_per_second"] = where
    else:
        sources["per_core_rows_per_second"] = "given"
    if batch_overhead_seconds is None:
        value, where = _measured(results / "latency.json", "batch_overhead_seconds")
        if value is None:
            batch_overhead_seconds = DEFAULT_BATCH_OVERHEAD_SECONDS
            sources["batch_overhead_seconds"] = "default, not measured"
        else:
            batch_overhead_seconds = value
            sources["batch_overhead_seconds"] = where
    else:
        sources["batch_overhead_seconds"] = "given"
    try:
        inp = CapacityInputs(
            events_per_second=events_per_second, replay_tb_per_day=replay_tb_per_day,
            event_bytes=event_bytes, per_core_rows_per_second=per_core_rows_per_second,
            p95_seconds=p95_seconds, batch_overhead_seconds=batch_overhead_seconds,
            target_utilization=target_utilization, cores_per_executor=cores_per_executor,
            compression_ratio=compression_ratio, chunk_cores=chunk_cores, sources=sources,
        )
        result = plan(inp)
    except CapacityError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    result["warnings"] = notes + result["warnings"]
    if output == "json":
        typer.echo(json.dumps(result, indent=2))
        return
    for n in notes:
        typer.echo(f"warning: {n}", err=True)
    typer.echo(render(result))


def render(r: dict[str, Any]) -> str:
    s, k, lat, b = r["streaming"], r["kafka"], r["latency"], r["backfill"]
    lines = [
        "Streaming ingest",
        f"  peak {s['peak_events_per_second']:,.0f} events/s = "
        f"{s['ingress_mb_per_second_uncompressed']:g} MB/s ({s['ingress_mb_per_second_compressed']:g} MB/s "
        "compressed)",
        f"  {s['executors']} executors x {s['cores_per_executor']} cores = {s['cores']} cores "
        f"(capacity {s['capacity_events_per_second']:,.0f}/s, {s['utilization_at_peak']:.0%} used at peak)",
        f"  a {r['inputs']['outage_minutes']:g}-minute outage is caught up in "
        f"{s['catchup_seconds_after_outage']}s after restart",
        "Kafka",
        f"  {k['partitions']} partitions (>= {k['partitions_for_parallelism']} for one task per core, "
        f">= {k['partitions_for_throughput']} for throughput); "
        f"{k['retention_bytes_per_day_compressed'] / 1e12:.1f} TB/day of log (compressed)",
        "Trigger and batch size (P95 ingestion -> queryable)",
        f"  trigger {lat['trigger_seconds']:g}s, {lat['batch_events']:,} events per batch, "
        f"batch ~{lat['batch_seconds_estimate']:g}s; P95 ~{lat['p95_estimate_seconds']:g}s "
        f"(design {lat['design_p95_seconds']:g}s, budget {lat['p95_budget_seconds']:g}s"
        f"{'' if lat['meets_budget'] else ', NOT MET'})",
        f"  maxOffsetsPerTrigger {lat['max_offsets_per_trigger']:,} (a catch-up batch ~"
        f"{lat['catchup_batch_seconds_estimate']:g}s)",
        "  trigger  batch events     batch s  P95 s  stable  within design",
    ]
    for o in lat["options"]:
        lines.append(
            f"  {o['trigger_seconds']:>6g}s  {o['batch_events']:>13,}  {o['batch_seconds']:>7g}  "
            f"{o['p95_estimate_seconds']:>5g}  {'yes' if o['stable'] else 'no':>6}  "
            f"{'yes' if o['within_budget'] else 'no':>13}"
        )
    lines += [
        f"Backfill ({b['tb_per_day']:g} TB/day)",
        f"  {b['events_per_day']:,} events/day = {b['events_per_second_needed']:,}/s over the backfill "
        f"window: {b['cores']} cores ({b['executors']} executors)",
        f"  chunk = {b['chunk_hours_of_history']:g} h of history ({b['chunk_events']:,} events, "
        f"{b['chunk_gb_uncompressed']:g} GB) ~{b['chunk_minutes_estimate']:g} min on "
        f"{b['chunk_cores']} cores; {b['concurrency']} chunk(s) at once (pipectl backfill "
        f"--parallelism {b['concurrency']}); {b['chunks_per_day']} chunks/day; "
        f"{b['history_days_per_day']:g} days of history per day",
        "Assumptions",
        *[f"  - {a}" for a in r["assumptions"]],
    ]
    if r["warnings"]:
        lines += ["Warnings", *[f"  ! {w}" for w in r["warnings"]]]
    return "\n".join(lines)
