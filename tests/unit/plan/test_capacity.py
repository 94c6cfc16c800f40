"""Capacity planning arithmetic (controller.plan.capacity), checked against hand calculations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controller.plan.capacity import (
    CapacityError,
    CapacityInputs,
    choose_trigger,
    chunk_hours,
    plan,
    round_up,
    trigger_options,
)

# Round numbers: 100k events/s per core, 1 s batch overhead.
BASE = CapacityInputs(per_core_rows_per_second=100_000, batch_overhead_seconds=1.0)


def test_streaming_cores_executors_and_headroom() -> None:
    s = plan(BASE)["streaming"]
    # 1.2M / (100k * 0.6) = 20 cores = 5 executors of 4
    assert (s["cores"], s["executors"]) == (20, 5)
    assert s["capacity_events_per_second"] == 2_000_000 and s["utilization_at_peak"] == 0.6
    # 200 bytes x 1.2M/s = 240 MB/s, 60 MB/s compressed (4x)
    assert (s["ingress_mb_per_second_uncompressed"], s["ingress_mb_per_second_compressed"]) == (240.0, 60.0)
    # a 5-minute backlog (360M events) drains at the 800k/s spare: 450 s
    assert s["catchup_seconds_after_outage"] == 450.0
    # cores round up to whole executors: 1.2M / (70k * 0.6) = 28.6 -> 29 -> 8 executors = 32 cores
    s2 = plan(CapacityInputs(per_core_rows_per_second=70_000))["streaming"]
    assert (s2["cores"], s2["executors"]) == (32, 8)


def test_kafka_partitions_cover_cores_and_throughput() -> None:
    k = plan(BASE)["kafka"]
    assert (k["partitions_for_parallelism"], k["partitions_for_throughput"]) == (20, 24)  # 240 MB/s / 10
    assert k["partitions"] == 24  # max(20, 24) rounded up to a multiple of 12
    k = plan(CapacityInputs(per_core_rows_per_second=10_000))["kafka"]
    assert k["partitions_for_parallelism"] == 200 and k["partitions"] == 204
    assert round_up(1, 12) == 12 and round_up(24, 12) == 24 and round_up(25, 12) == 36


def test_trigger_is_the_largest_within_the_design_budget() -> None:
    opts = {o.trigger_seconds: o for o in trigger_options(BASE, 20)}
    # u = 1.2M / 2M = 0.6; batch = 1 + 0.6 T; P95 = 0.95 T + batch + 2
    assert opts[30.0].batch_seconds == 19.0 and opts[30.0].p95_estimate_seconds == pytest.approx(49.5)
    assert opts[45.0].p95_estimate_seconds == pytest.approx(72.75, abs=0.1) and not opts[45.0].within_budget
    lat = plan(BASE)["latency"]
    assert (lat["trigger_seconds"], lat["batch_events"], lat["meets_budget"]) == (30.0, 36_000_000, True)
    assert lat["design_p95_seconds"] == 60.0 and lat["max_offsets_per_trigger"] == 72_000_000
    # a catch-up batch of 72M events at 2M/s: 1 + 36 s
    assert lat["catchup_batch_seconds_estimate"] == 37.0
    # A looser budget allows larger batches.
    assert plan(CapacityInputs(per_core_rows_per_second=100_000, batch_overhead_seconds=1.0, p95_seconds=240))[
        "latency"
    ]["trigger_seconds"] == 60.0


def test_an_unreachable_budget_is_flagged_not_hidden() -> None:
    # design budget 10 s: even a 5 s trigger estimates 0.95*5 + (1 + 3) + 2 = 10.75 s
    inp = CapacityInputs(per_core_rows_per_second=100_000, batch_overhead_seconds=1.0, p95_seconds=20)
    r = plan(inp)
    assert not r["latency"]["meets_budget"] and r["latency"]["trigger_seconds"] == 5.0  # lowest estimate
    assert any("no trigger" in w for w in r["warnings"])
    # No stable trigger at all (a 40 s overhead): the largest is proposed, and flagged.
    r = plan(CapacityInputs(per_core_rows_per_second=100_000, batch_overhead_seconds=40.0))
    assert not r["latency"]["meets_budget"] and r["latency"]["trigger_seconds"] == 60.0
    assert any("no trigger" in w for w in r["warnings"])


def test_unstable_triggers_are_never_chosen_when_a_stable_one_exists() -> None:
    opts = trigger_options(CapacityInputs(per_core_rows_per_second=100_000, batch_overhead_seconds=4.0), 20)
    assert not {o.trigger_seconds: o for o in opts}[5.0].stable  # 4 + 3 > 5
    chosen, met = choose_trigger(opts)
    assert chosen.stable and met


def test_backfill_for_40_tb_per_day() -> None:
    b = plan(BASE)["backfill"]
    # 40e12 B / 200 B = 2e11 events/day over a 20 h window = 2.78M/s -> 28 cores at 100k/s
    assert b["events_per_day"] == 200_000_000_000 and b["events_per_second_needed"] == 2_777_778
    assert (b["cores"], b["executors"]) == (28, 7)
    # an hour of history = 1.2M * 0.6 * 3600 = 2.592e9 events; a 30-minute chunk on 32 cores holds
    # 100k * 32 * 1800 = 5.76e9: 2 h (5.18e9) fits, 3 h does not
    assert b["chunk_hours_of_history"] == 2.0 and b["chunk_events"] == 5_184_000_000
    assert b["chunk_minutes_estimate"] == pytest.approx(27.0)
    assert b["concurrency"] == 1 and b["chunks_per_day"] == math.ceil(2e11 / 5.184e9)
    assert b["history_days_per_day"] == pytest.approx(3.22, abs=0.01)
    assert any("pipectl backfill plans one chunk per dt day" in w for w in plan(BASE)["warnings"])


def test_chunk_hours_are_divisors_of_a_day() -> None:
    assert chunk_hours(1.0, 100.0) == 24.0
    assert chunk_hours(10.0, 100.0) == 8.0
    assert chunk_hours(10.0, 35.0) == 3.0
    assert chunk_hours(1e12, 1.0) == 0.25


def test_inputs_are_validated() -> None:
    with pytest.raises(CapacityError, match="per_core_rows_per_second"):
        CapacityInputs(per_core_rows_per_second=0)
    with pytest.raises(CapacityError, match="target_utilization"):
        CapacityInputs(target_utilization=1.5)
    with pytest.raises(CapacityError, match="at most 24"):
        CapacityInputs(backfill_window_hours=30)


def test_every_input_is_listed_as_an_assumption() -> None:
    r = plan(BASE)
    text = " ".join(r["assumptions"])
    for needle in ("1,200,000 events/s", "40 TB/day", "100,000 events/s/core", "200 bytes", "4x",
                   "60% utilization", "4 cores per executor", "10 MB/s per Kafka partition", "20 h per day"):
        assert needle in text, needle
    assert json.loads(json.dumps(r)) == r  # plain data


def test_cli_reads_the_measured_figures_or_warns(tmp_path: Path) -> None:
    from controller.cli.capacity import plan_capacity
    from controller.cli.main import app

    assert plan_capacity  # registered as `pipectl plan-capacity`
    r = CliRunner().invoke(app, ["plan-capacity", "--results", str(tmp_path), "-o", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["sources"]["per_core_rows_per_second"] == "default, not measured"
    assert any("run bench/bench_sink.py" in w for w in out["warnings"])

    (tmp_path / "sink_throughput.json").write_text(json.dumps(
        {"per_core_rows_per_second": 100_000, "measured_at": "2026-11-26T00:00:00Z", "master": "local[2]",
         "machine": {"loadavg_start": [1.0, 1.0, 1.0]}}
    ))
    (tmp_path / "latency.json").write_text(json.dumps({"batch_overhead_seconds": 1.0, "measured_at": "x"}))
    r = CliRunner().invoke(app, ["plan-capacity", "--results", str(tmp_path), "-o", "json"])
    out = json.loads(r.output)
    assert out["inputs"]["per_core_rows_per_second"] == 100_000
    assert "bench/bench_sink.py" in out["sources"]["per_core_rows_per_second"]
    assert out["streaming"]["cores"] == 20 and out["latency"]["trigger_seconds"] == 30.0

    r = CliRunner().invoke(app, ["plan-capacity", "--results", str(tmp_path)])
    assert r.exit_code == 0 and "Assumptions" in r.output and "trigger 30s" in r.output
    r = CliRunner().invoke(app, ["plan-capacity", "--per-core-rows-per-second", "-1"])
    assert r.exit_code == 1 and "must be positive" in r.output
