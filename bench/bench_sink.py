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
"""

from __future__ import annotations

import argparse
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


def run_once(
    info: dict[str, Any], args: argparse.Namespace, topic: str, db: str, sink: str, work: Path, n: int,
    timeout: float,
) -> dict[str, Any]:
    table = f"{db}.hm_{sink}_{n}"
    checkpoint = work / f"ckpt-{sink}-{n}"
    log = work / f"job-{sink}-{n}.log"
    argv = st.job_argv(
        master=args.master, bootstrap=info["kafka_bootstrap"], topic=topic, table=table,
        checkpoint=checkpoint, query=f"bench-sink-{sink}-{n}",
        extra=["--sink", sink, "--available-now", "--max-offsets-per-trigger", str(args.batch)],
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
    sql = f'SELECT coalesce(sum(samples), 0), count(*) FROM hive."{db}"."hm_{sink}_{n}"'
    samples = st.presto(sql, info)[0]
    return {
        "sink": sink,
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
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()

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


if __name__ == "__main__":
    sys.exit(main())
