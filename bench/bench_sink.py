"""Idempotent sink vs plain append sink: the example job's throughput on the same data, in one run.

Fills one Kafka topic once (``--events`` HostMetricEvents spread over ``--span-minutes`` of event
time, 20 hosts x 4 metrics), then runs ``manifests/jobs/host_metrics_agg.py`` over it twice with
the same settings — ``--sink append`` (``INSERT INTO``) and ``--sink idempotent``
(read-merge-write of the touched ``dt`` partitions into a new directory + metastore swap) — each
on its own table and checkpoint, ``--available-now`` with ``--max-offsets-per-trigger`` so the
data passes in several equal batches. The order of the two runs alternates per round.

Throughput is measured in steady state: input rows of batches 1..n (from the checkpoint's offset
log) divided by the time between the commits of batch 0 and batch n (commit files' mtimes), so
JVM start-up and the first batch's warm-up are excluded. Each table's ``sum(samples)`` is checked
through Presto to equal the events sent. Prints rows/s for each sink and the ratio
idempotent / append — by wall time and by CPU time of the job's processes (sampled from /proc;
on a shared machine the CPU figure is the stable one) — and writes
``bench/results/sink_throughput.json`` (rows per CPU-second of the idempotent job is what
``pipectl plan-capacity`` reads as its per-core throughput).

    .venv/bin/python bench/bench_sink.py [--events 1600000] [--batch 400000] [--rounds 2] [--master local[2]]

With ``--iceberg``: the exactly-once Iceberg sink vs a plain Iceberg append (``--sink idempotent``
/ ``append`` on Iceberg tables, same topic, same run; rows per CPU-second ratio), then the
exactly-once sink's per-batch cost (median CPU-seconds and seconds per steady batch) with
``--history-rows`` and 10x that many rows already in the table, on fresh data each time; it fails
if a sum is off, the history is not that size, or no batch went through MERGE. With ``--emit
final`` both runs of the job emit each window once (``controller.jobkit.final_windows``), a
sentinel event a day later closes the data's last windows, and it fails if any batch went through
MERGE instead. Writes
``bench/results/sink_iceberg.json`` (with ``--emit final``: ``sink_iceberg_final.json``;
``sink_throughput.json``, read by plan-capacity, is untouched).
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _streaming as st
from _common import machine, say, stack_info

RESULTS = Path(__file__).resolve().parent / "results" / "sink_throughput.json"
ICEBERG_RESULTS = RESULTS.with_name("sink_iceberg.json")
ICEBERG_FINAL_RESULTS = RESULTS.with_name("sink_iceberg_final.json")  # --emit final


def run_once(
    info: dict[str, Any], args: argparse.Namespace, topic: str, db: str, sink: str, work: Path, n: int,
    timeout: float, *, name: str | None = None, catalog: str = "hive",
) -> dict[str, Any]:
    """One job run over ``topic``; ``name`` (default ``hm_<sink>_<n>``) is the table in ``db``."""
    name = name or f"hm_{sink}_{n}"
    table = f"{db}.{name}"
    checkpoint = work / f"ckpt-{name}-{n}"
    log = work / f"job-{name}-{n}.log"
    argv = st.job_argv(
        master=args.master, bootstrap=info["kafka_bootstrap"], topic=topic, table=table,
        checkpoint=checkpoint, query=f"bench-sink-{name.replace('_', '-')}-{n}",
        extra=["--sink", sink, "--available-now", "--max-offsets-per-trigger", str(args.batch),
               *(["--emit", args.emit] if getattr(args, "emit", "updates") != "updates" else [])],
        shuffle_partitions=args.shuffle_partitions,
    )
    t0 = time.monotonic()
    proc = st.start_job(argv, log)
    cpu = st.CpuSampler(proc.pid)
    cpu.start()
    try:
        rc = proc.wait(timeout=timeout)
    except BaseException:
        import os

        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        cpu.done.set()
        cpu.join(timeout=5)
    wall = time.monotonic() - t0
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"{sink} job exited {rc}:\n{tail}")
    rows = st.batch_rows(checkpoint)
    commits = st.commit_times(checkpoint)
    sink_s = st.sink_seconds(log)
    # Full batches only: a last batch with a handful of rows would count its fixed cost alone.
    batches = sorted(b for b in commits if rows.get(b, 0) >= args.batch // 2)
    if len(batches) < 2:
        raise RuntimeError(f"{sink}: only {len(batches)} full batch(es); lower --batch")
    first, last = batches[0], batches[-1]
    steady_rows = sum(rows[b] for b in batches[1:])
    steady_s = commits[last] - commits[first]
    steady_cpu = cpu.at(commits[last]) - cpu.at(commits[first])
    sql = f'SELECT coalesce(sum(samples), 0), count(*) FROM {catalog}."{db}"."{name}"'
    samples = st.presto(sql, info)[0]
    cpu_per_batch = [
        round(cpu.at(commits[b]) - cpu.at(commits[a]), 2) for a, b in itertools.pairwise(batches)
    ]
    return {
        "sink": sink,
        "table": name,
        "cpu_seconds_per_batch": cpu_per_batch,
        **(_iceberg_commits(log) if catalog == "iceberg" else {}),
        "rows_per_second": round(steady_rows / steady_s, 1),
        "rows_per_cpu_second": round(steady_rows / steady_cpu, 1),
        "steady_cpu_seconds": round(steady_cpu, 2),
        "steady_rows": steady_rows,
        "steady_seconds": round(steady_s, 3),
        "batches": len(batches),
        "batch_rows": [rows[b] for b in batches],
        "batch_seconds": [round(commits[b] - commits[a], 3) for a, b in itertools.pairwise(batches)],
        "foreach_batch_seconds": [sink_s.get(b) for b in batches],
        "wall_seconds_with_jvm_start": round(wall, 1),
        "sum_samples": int(samples[0]),
        "table_rows": int(samples[1]),
    }


def _iceberg_commits(log: Path) -> dict[str, Any]:
    """How the Iceberg sink committed each batch, and the median seconds of each of its phases
    (aggregate, stats, merge or append...) over the batches after the first, from its log lines."""
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if "host_metrics_agg: batch " in ln]
    phases: dict[str, list[float]] = {}
    for ln in lines[1:]:
        timings = ln[ln.rfind("{"):ln.rfind("}") + 1] if "{" in ln else ""
        try:
            parsed = ast.literal_eval(timings) if timings else {}
        except (ValueError, SyntaxError):
            parsed = {}
        for k, v in parsed.items() if isinstance(parsed, dict) else ():
            phases.setdefault(str(k), []).append(float(v))
    return {
        "merge_batches": sum("'merge':" in ln for ln in lines),
        "append_batches": sum("'append':" in ln for ln in lines),
        "skipped_batches": sum("already committed" in ln for ln in lines),
        "median_phase_seconds": {k: round(statistics.median(v), 3) for k, v in sorted(phases.items())},
    }


ICEBERG_DDL = (
    "(host STRING, metric STRING, window_start TIMESTAMP_NTZ, samples BIGINT, avg_value DOUBLE, "
    "max_value DOUBLE) USING iceberg PARTITIONED BY (days(window_start)) TBLPROPERTIES ('format-version'='2'"
)


def iceberg_ddl(merge_mode: str, distribution: str | None = None) -> str:
    """The bench table's DDL; ``merge_mode`` is Iceberg's ``write.merge.mode`` (how MERGE rewrites),
    ``distribution`` its ``write.merge.distribution-mode`` (None: Iceberg's default, hash)."""
    extra = f", 'write.merge.distribution-mode'='{distribution}'" if distribution else ""
    return f"{ICEBERG_DDL}, 'write.merge.mode'='{merge_mode}'{extra})"


def _iceberg_rows(info: dict[str, Any], db: str, name: str) -> int:
    return int(st.presto(f'SELECT count(*) FROM iceberg."{db}"."{name}"', info)[0][0])


def _add_history(info: dict[str, Any], db: str, name: str, rows: int, before_ms: int) -> None:
    """``rows`` older aggregate rows (other hosts, the minutes before the data), in the same days."""
    st.hive(
        f"INSERT INTO iceberg.`{db}`.`{name}` SELECT concat('hist-', CAST(id % 500 AS STRING)), 'cpu', "
        f"CAST(timestamp_millis({before_ms} - 60000 * (1 + id DIV 500)) AS TIMESTAMP_NTZ), 10, 1.0, 2.0 "
        f"FROM range({rows})", info,
    )


def _batch_cost(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "table_rows_before": r["table_rows_before"],
        "median_foreach_batch_seconds": statistics.median(
            [x for x in r["foreach_batch_seconds"] if x is not None]),
        "median_cpu_seconds_per_batch": statistics.median(r["cpu_seconds_per_batch"]),
        "median_batch_seconds": statistics.median(r["batch_seconds"]),
        "merge_batches": r["merge_batches"],
    }


def iceberg_bench(info: dict[str, Any], args: argparse.Namespace, uid: str, work: Path) -> dict[str, Any]:
    """Exactly-once Iceberg sink vs plain Iceberg append (same data, same run), and the exactly-once
    sink's per-batch cost with ``--history-rows`` and 10x that many rows already in the table."""
    topic, topic2, db = f"{uid}.host_metrics", f"{uid}.host_metrics_later", f"{uid}_bench"
    span_ms = int(args.span_minutes * 60_000)
    start_ms = int(time.time() * 1000) - 2 * span_ms - 3_600_000
    step = span_ms / args.events
    runs: list[dict[str, Any]] = []
    growth: list[dict[str, Any]] = []
    try:
        for t in (topic, topic2):
            st.create_topic(info["kafka_bootstrap"], t, args.partitions)
        st.hive(f"CREATE DATABASE `{db}`", info)
        st.produce_fast(info["kafka_bootstrap"], topic, 11, args.events, start_ms, step)
        st.produce_fast(info["kafka_bootstrap"], topic2, 12, args.events, start_ms + span_ms, step)
        if args.emit == "final":  # a day later: every window of the data closes, theirs never does
            for t in (topic, topic2):
                st.produce_sentinels(info["kafka_bootstrap"], t, start_ms + 2 * span_ms + 86_400_000)
        say(f"produced 2 x {args.events} events ({topic}, {topic2}), --emit {args.emit}")
        for n in range(args.rounds):
            order = ["append", "idempotent"] if n % 2 == 0 else ["idempotent", "append"]
            for sink in order:
                name = f"ice_{sink}_{n}"
                ddl = iceberg_ddl(args.merge_mode, args.merge_distribution)
                st.hive(f"CREATE TABLE iceberg.`{db}`.`{name}` {ddl}", info)
                say(f"round {n + 1}: iceberg {sink} sink ...")
                r = run_once(info, args, topic, db, sink, work, n, args.job_timeout, name=name,
                             catalog="iceberg")
                _check(r, args.events, sink)
                say(f"  iceberg {sink}: {r['rows_per_cpu_second']:,.0f} rows/CPU-s, "
                    f"merges {r['merge_batches']}")
                runs.append(r)
        # Per-batch cost as the table grows: 1x, then 10x the history rows, fresh data each time.
        name = "ice_growth"
        ddl = iceberg_ddl(args.merge_mode, args.merge_distribution)
        st.hive(f"CREATE TABLE iceberg.`{db}`.`{name}` {ddl}", info)
        for factor, data in ((1, topic), (10, topic2)):
            want = factor * args.history_rows
            _add_history(info, db, name, want - _history_rows(info, db, name), start_ms)
            before = _iceberg_rows(info, db, name)
            if _history_rows(info, db, name) != want:
                raise RuntimeError(f"history is {_history_rows(info, db, name)} rows, not {want}")
            say(f"growth {factor}x: {before:,} rows in the table ...")
            r = run_once(info, args, data, db, "idempotent", work, factor, args.job_timeout, name=name,
                         catalog="iceberg")
            r["table_rows_before"] = before
            growth.append(r)
        sql = f'SELECT sum(samples) FROM iceberg."{db}"."{name}" WHERE host NOT LIKE \'hist-%\''
        got = int(st.presto(sql, info)[0][0])
        if got != 2 * args.events:
            raise RuntimeError(f"growth table: sum(samples) {got} != {2 * args.events} sent")
    finally:
        try:
            st.hive(f"DROP DATABASE IF EXISTS `{db}` CASCADE", info)
        finally:
            for t in (topic, topic2):
                st.delete_topic(info["kafka_bootstrap"], t)

    def med(key: str, sink: str) -> float:
        return float(statistics.median([r[key] for r in runs if r["sink"] == sink]))

    exo, app = med("rows_per_cpu_second", "idempotent"), med("rows_per_cpu_second", "append")
    costs = [_batch_cost(r) for r in growth]
    if args.emit == "final":
        # The second topic's first minute is the one the first topic's data ends in, so the 10x
        # run's first batch merges that window into the growth table (one MERGE, rightly).
        if (any(r["merge_batches"] for r in runs) or not all(r["append_batches"] for r in runs)
                or any(r["merge_batches"] > 1 for r in growth)):
            raise RuntimeError("--emit final: a batch went through MERGE, or none was appended")
    elif any(c["merge_batches"] == 0 for c in costs) or not any(r["merge_batches"] for r in runs):
        raise RuntimeError("no batch went through MERGE: the exactly-once path with late rows "
                           "was not measured")
    return {
        "iceberg_append_rows_per_cpu_second": app,
        "iceberg_exactly_once_rows_per_cpu_second": exo,
        "ratio_iceberg_exactly_once_to_append_cpu": round(exo / app, 3),
        "iceberg_append_rows_per_second": med("rows_per_second", "append"),
        "iceberg_exactly_once_rows_per_second": med("rows_per_second", "idempotent"),
        "history_rows": args.history_rows,
        "batch_cost_1x": costs[0],
        "batch_cost_10x": costs[1],
        "batch_cost_ratio_10x_to_1x_cpu": round(
            costs[1]["median_cpu_seconds_per_batch"] / costs[0]["median_cpu_seconds_per_batch"], 3),
        "runs": runs + growth,
    }


def _history_rows(info: dict[str, Any], db: str, name: str) -> int:
    sql = f'SELECT count(*) FROM iceberg."{db}"."{name}" WHERE host LIKE \'hist-%\''
    return int(st.presto(sql, info)[0][0])


def _check(r: dict[str, Any], events: int, sink: str) -> None:
    if r["sum_samples"] != events:
        raise RuntimeError(f"{sink}: sum(samples) {r['sum_samples']} != {events} sent")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=1_600_000)
    p.add_argument("--batch", type=int, default=400_000, help="maxOffsetsPerTrigger")
    p.add_argument("--span-minutes", type=float, default=20.0, help="event-time span of the data")
    p.add_argument("--partitions", type=int, default=4, help="Kafka partitions of the topic")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--shuffle-partitions", type=int, default=4)
    p.add_argument("--rounds", type=int, default=2, help="append+idempotent pairs (order alternates)")
    p.add_argument("--job-timeout", type=float, default=420.0, help="seconds per job run")
    p.add_argument("--budget", type=float, default=580.0, help="seconds for the whole benchmark")
    p.add_argument("--out", type=Path, help=f"default {RESULTS}, with --iceberg {ICEBERG_RESULTS}")
    p.add_argument("--iceberg", action="store_true",
                   help="Iceberg: exactly-once vs plain append, batch cost at 1x and 10x table size")
    p.add_argument("--merge-mode", choices=("copy-on-write", "merge-on-read"), default="copy-on-write",
                   help="with --iceberg: the tables' write.merge.mode")
    p.add_argument("--merge-distribution", choices=("none", "hash", "range"),
                   help="with --iceberg: the tables' write.merge.distribution-mode (default: Iceberg's)")
    p.add_argument("--history-rows", type=int, default=500_000, help="with --iceberg: table rows at 1x")
    p.add_argument("--emit", choices=("updates", "final"), default="updates",
                   help="with --iceberg: the job's --emit (final: each window once, appended; "
                        "controller.jobkit.final_windows)")
    args = p.parse_args()
    if args.iceberg:
        return iceberg_main(args)
    args.out = args.out or RESULTS

    deadline = time.monotonic() + args.budget
    info = stack_info()
    started = machine()
    uid = "bsk" + uuid.uuid4().hex[:7]
    topic, db = f"{uid}.host_metrics", f"{uid}_bench"
    work = Path(tempfile.mkdtemp(prefix=f"{uid}-"))
    cores = int(args.master.split("[", 1)[1].rstrip("]")) if "[" in args.master else 1
    st.FastEncoder().check()
    try:
        st.create_topic(info["kafka_bootstrap"], topic, args.partitions)
        st.hive(f"CREATE DATABASE `{db}`", info)
        start_ms = int(time.time() * 1000) - int(args.span_minutes * 60_000) - 3_600_000
        step = args.span_minutes * 60_000 / args.events
        rate = st.produce_fast(info["kafka_bootstrap"], topic, 11, args.events, start_ms, step)
        say(f"produced {args.events} events to {topic} at {rate:,.0f}/s")
        runs: list[dict[str, Any]] = []
        pair = 0.0
        for n in range(args.rounds):
            left = deadline - time.monotonic()
            if n and left < 1.2 * pair:
                say(f"stopping after {n} round(s): {left:.0f}s left of the {args.budget:.0f}s budget")
                break
            t_pair = time.monotonic()
            order = ["append", "idempotent"] if n % 2 == 0 else ["idempotent", "append"]
            for sink in order:
                say(f"round {n + 1}: {sink} sink ...")
                timeout = min(args.job_timeout, max(30.0, deadline - time.monotonic()))
                r = run_once(info, args, topic, db, sink, work, n, timeout)
                say(f"  {sink}: {r['rows_per_second']:,.0f} rows/s ({r['steady_rows']} rows in "
                    f"{r['steady_seconds']:.1f}s over {r['batches'] - 1} batches; "
                    f"sum(samples)={r['sum_samples']})")
                if r["sum_samples"] != args.events:
                    raise RuntimeError(f"{sink}: sum(samples) {r['sum_samples']} != {args.events} sent")
                runs.append(r)
            pair = time.monotonic() - t_pair
    finally:
        try:
            st.hive(f"DROP DATABASE IF EXISTS `{db}` CASCADE", info)
        finally:
            st.delete_topic(info["kafka_bootstrap"], topic)
            shutil.rmtree(work, ignore_errors=True)

    def med(key: str, sink: str) -> float:
        return float(statistics.median([r[key] for r in runs if r["sink"] == sink]))

    append, idem = med("rows_per_second", "append"), med("rows_per_second", "idempotent")
    append_cpu, idem_cpu = med("rows_per_cpu_second", "append"), med("rows_per_cpu_second", "idempotent")
    end = machine()
    result = {
        "bench": "sink_throughput",
        "measured_at": started["date"],
        "events": args.events,
        "batch_rows": args.batch,
        "kafka_partitions": args.partitions,
        "event_time_span_minutes": args.span_minutes,
        "master": args.master,
        "cores": cores,
        "rounds": len(runs) // 2,
        "append_rows_per_second": append,
        "idempotent_rows_per_second": idem,
        "ratio_idempotent_to_append": round(idem / append, 3),
        "append_rows_per_cpu_second": append_cpu,
        "idempotent_rows_per_cpu_second": idem_cpu,
        "ratio_idempotent_to_append_cpu": round(idem_cpu / append_cpu, 3),
        "per_core_rows_per_second": idem_cpu,
        "per_core_note": (
            "rows per CPU-second of the job's own processes (JVM + Python driver: Kafka read, Avro "
            "decode, 1-minute aggregation, idempotent merge + partition swap) in steady state on "
            f"{args.master}, batches of {args.batch:,} rows; the metastore's and Kafka broker's CPU is "
            "not counted; CPU time is far less sensitive than wall time to the shared machine's load"
        ),
        "machine": {**{k: started[k] for k in ("cpus", "cpu_model", "mem_gib")},
                    "loadavg_start": started["loadavg"], "loadavg_end": end["loadavg"]},
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'':12}{'rows/s (wall)':>16}{'rows/CPU-s':>14}")
    print(f"{'append':12}{append:>16,.0f}{append_cpu:>14,.0f}")
    print(f"{'idempotent':12}{idem:>16,.0f}{idem_cpu:>14,.0f}")
    print(f"{'ratio':12}{idem / append:>16.3f}{idem_cpu / append_cpu:>14.3f}   (idempotent / append)")
    print(f"per core: {idem_cpu:,.0f} rows per CPU-second (idempotent, {args.master}, {len(runs) // 2} "
          f"round(s)); load average {started['loadavg']} -> {end['loadavg']}")
    print(f"written to {args.out}")
    return 0


def iceberg_main(args: argparse.Namespace) -> int:
    info = stack_info()
    started = machine()
    uid = "bsi" + uuid.uuid4().hex[:7]
    work = Path(tempfile.mkdtemp(prefix=f"{uid}-"))
    st.FastEncoder().check()
    try:
        figures = iceberg_bench(info, args, uid, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    end = machine()
    result = {
        "bench": "sink_iceberg", "measured_at": started["date"], "events": args.events,
        "batch_rows": args.batch, "kafka_partitions": args.partitions, "master": args.master,
        "rounds": args.rounds, "emit": args.emit, "merge_mode": args.merge_mode,
        "merge_distribution": args.merge_distribution, **figures,
        "machine": {**{k: started[k] for k in ("cpus", "cpu_model", "mem_gib")},
                    "loadavg_start": started["loadavg"], "loadavg_end": end["loadavg"]},
    }
    out = args.out or (ICEBERG_RESULTS if args.emit == "updates" else ICEBERG_FINAL_RESULTS)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    one, ten = figures["batch_cost_1x"], figures["batch_cost_10x"]
    print(f"iceberg rows/CPU-s: exactly-once {figures['iceberg_exactly_once_rows_per_cpu_second']:,.0f}, "
          f"append {figures['iceberg_append_rows_per_cpu_second']:,.0f}, ratio "
          f"{figures['ratio_iceberg_exactly_once_to_append_cpu']}")
    print(f"batch cost (CPU-s, median): {one['median_cpu_seconds_per_batch']} at "
          f"{one['table_rows_before']:,} rows, {ten['median_cpu_seconds_per_batch']} at "
          f"{ten['table_rows_before']:,} rows (ratio {figures['batch_cost_ratio_10x_to_1x_cpu']}); "
          f"load {started['loadavg']} -> {end['loadavg']}")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
