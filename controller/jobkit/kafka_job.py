"""The common frame of a pipectl streaming job that aggregates a Kafka topic into a table.

A job author writes two functions — ``decode`` (Kafka rows -> typed events with an
``event_time`` column) and ``aggregate`` (one micro-batch's events -> partial aggregates in the
table's column order plus ``dt``) — and a ``MergeSpec``; ``run_aggregation`` does the rest the
controller relies on: the arguments the runner passes (``base_parser``), the Kafka reader (with
``--ending-offsets`` for replays and ``--max-offsets-per-trigger``), the event-time watermark,
the idempotent sink (the exactly-once Iceberg sink for an Iceberg table), and the lifecycle
contract (status file, graceful stop file).

Undecodable records: a ``decode`` that keeps them with a ``decode_error`` column
(``controller.jobkit.wire.decode_confluent``) gets them counted per reason in every batch and left
out of the sink; the counts since the job started are written to the status file as
``{"pipectl": {"undecodableRecords": N, "undecodableByReason": {...}}}``, which the
streamingHealth gate's ``maxUndecodableRecords`` judges. ``--schema-registry URL --subject S``
gives ``decode`` the subject's writer schemas (``args.writer_schemas``, fetched once at start).

Used by both example jobs (``manifests/jobs/host_metrics_agg.py``, ``request_latency_agg.py``);
imports only pyspark and the stdlib.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from controller.jobkit.final_windows import APPEND_MODE_HINT, EMIT_CHOICES, final_stream
from controller.jobkit.iceberg_sink import EXTENSIONS as ICEBERG_EXTENSIONS
from controller.jobkit.lifecycle import add_lifecycle_arguments, run_until_stopped, stop_guard
from controller.jobkit.sink import (
    BatchResult,
    MergeSpec,
    batch_watermark_ms,
    check_query_name,
    make_sink,
    split_table,
)
from controller.jobkit.wire import DECODE_ERROR, TOKEN_ENV, fetch_writer_schemas

__all__ = [
    "AggregationJob",
    "base_parser",
    "before_offsets",
    "check_args",
    "ending_offsets",
    "run_aggregation",
    "spark_interval",
]

_DURATION_RE = re.compile(r"^\s*(\d+)\s*(ms|s|sec|seconds?|m|min|minutes?|h|hours?)\s*$")
_UNITS = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours"}


def spark_interval(text: str) -> str:
    """``10s`` / ``500ms`` / ``2 minutes`` -> a Spark interval string (``10 seconds``)."""
    m = _DURATION_RE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use e.g. 500ms, 10s, 2m, 1h")
    unit = m.group(2)
    key = "ms" if unit == "ms" else unit[0]
    return f"{int(m.group(1))} {_UNITS[key]}"


def ending_offsets(text: str) -> dict[str, dict[int, int]]:
    """``{"topic": {"0": 120}}`` (Spark's offsets JSON) -> exclusive end offset per topic partition."""
    try:
        raw = json.loads(text)
        return {str(t): {int(p): int(o) for p, o in parts.items()} for t, parts in raw.items()}
    except (ValueError, AttributeError, TypeError) as e:
        raise argparse.ArgumentTypeError(f'--ending-offsets: expected {{"topic": {{"0": 120}}}}: {e}') from e


def before_offsets(ends: dict[str, dict[int, int]]) -> Column:
    """Kafka rows strictly before ``ends``; partitions it does not name are not read at all."""
    cond = F.lit(False)
    for topic, parts in sorted(ends.items()):
        for part, end in sorted(parts.items()):
            here = (F.col("topic") == F.lit(topic)) & (F.col("partition") == F.lit(part))
            cond = cond | (here & (F.col("offset") < F.lit(end)))
    return cond


def base_parser(prog: str, description: str, default_schema: Path) -> argparse.ArgumentParser:
    """The arguments pipectl's runner passes to every aggregation job (the job adds its own)."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--topic", required=True, help="Kafka topic (already stage-prefixed)")
    p.add_argument("--table", required=True, help="db.table (already stage-prefixed)")
    p.add_argument("--checkpoint", required=True, help="checkpoint directory (one per query)")
    p.add_argument("--trigger", type=spark_interval, default="10 seconds", help="micro-batch interval: 10s")
    p.add_argument("--starting-offsets", default="earliest", help="earliest | latest | JSON offsets")
    p.add_argument("--query-name", required=True)
    p.add_argument("--version", required=True, help="release version, recorded in commits and status")
    p.add_argument("--available-now", action="store_true", help="process what is in the topic, then stop")
    p.add_argument(
        "--ending-offsets", type=ending_offsets,
        help='with --available-now: read only records before these offsets, e.g. {"topic": {"0": 120}}',
    )
    p.add_argument("--sink", choices=["idempotent", "append"], default="idempotent")
    p.add_argument(
        "--emit", choices=EMIT_CHOICES, default="updates",
        help="updates: partial aggregates every batch (merged); final: each window once, when the "
        "watermark passes it (controller.jobkit.final_windows)",
    )
    p.add_argument("--watermark", type=spark_interval, default="2 minutes", help="allowed event lateness")
    p.add_argument("--max-offsets-per-trigger", type=int, help="cap on Kafka records per micro-batch")
    p.add_argument("--keep-versions", type=int, default=3, help="partition directories kept per dt")
    p.add_argument("--schema", type=Path, default=default_schema, help="Avro schema of the topic's values")
    p.add_argument(
        "--schema-registry", metavar="URL",
        help=f"Confluent-compatible registry the writer schemas are read from at start (token: ${TOKEN_ENV})",
    )
    p.add_argument("--subject", help="with --schema-registry: the topic's value subject (topic-value)")
    p.add_argument("--create-table", action="store_true", help="create the database/table if missing")
    p.add_argument(
        "--takeover-table", action="store_true",
        help="let this checkpoint write a table another query/checkpoint wrote (events may count twice)",
    )
    add_lifecycle_arguments(p)  # --status-file (latest progress JSON), --stop-file (graceful stop)
    return p


def check_args(args: argparse.Namespace) -> argparse.Namespace:
    split_table(args.table)
    check_query_name(args.query_name)
    if bool(args.schema_registry) != bool(args.subject):
        raise SystemExit("--schema-registry and --subject go together")
    return args


def writer_schemas(args: argparse.Namespace) -> dict[int, str] | None:
    """The subject's writer schemas by id from ``--schema-registry``; ``None`` without one."""
    if not args.schema_registry:
        return None
    return fetch_writer_schemas(args.schema_registry, args.subject, os.environ.get(TOKEN_ENV))


class DecodeTally:
    """Undecodable records since the job started, per reason (batches run one at a time, but the
    status writer reads from another thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_reason: dict[str, int] = {}

    def add(self, counts: dict[str, int]) -> None:
        with self._lock:
            for reason, n in counts.items():
                self._by_reason[reason] = self._by_reason.get(reason, 0) + n

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            by_reason = dict(sorted(self._by_reason.items()))
        return {"undecodableRecords": sum(by_reason.values()), "undecodableByReason": by_reason}


def split_undecodable(batch: DataFrame) -> tuple[DataFrame, dict[str, int]]:
    """The batch's decoded rows (without ``decode_error``) and its undecodable records per reason;
    a batch without the column is returned as it is."""
    if DECODE_ERROR not in batch.columns:
        return batch, {}
    failed = F.col(DECODE_ERROR).isNotNull()
    counts = {str(r[0]): int(r[1]) for r in batch.where(failed).groupBy(DECODE_ERROR).count().collect()}
    return batch.where(~failed).drop(DECODE_ERROR), counts


@dataclass(frozen=True)
class AggregationJob:
    """What a job author supplies; ``decode`` gets the schema JSON and the parsed arguments."""

    name: str
    decode: Callable[[DataFrame, str, argparse.Namespace], DataFrame]
    aggregate: Callable[[DataFrame, int | None], DataFrame]
    merge: MergeSpec
    table_ddl_columns: str
    """The table's columns as Spark DDL, without ``dt`` (the partition column)."""


def _spark(job: AggregationJob, args: argparse.Namespace) -> SparkSession:
    spark = (
        SparkSession.builder.appName(f"pipectl:{args.query_name}")
        # dt and window starts are defined in UTC whatever the machine's zone.
        .config("spark.sql.session.timeZone", "UTC")
        # MERGE INTO an Iceberg table (controller.jobkit.iceberg_sink) needs Iceberg's SQL
        # extensions; Spark only warns if the class is missing, and other statements parse as before.
        .config("spark.sql.extensions", ICEBERG_EXTENSIONS)
        .enableHiveSupport()
        .getOrCreate()
    )
    if args.create_table:
        db, table = split_table(args.table)
        spark.sql(f"CREATE DATABASE IF NOT EXISTS `{db}`")
        spark.sql(
            f"CREATE TABLE IF NOT EXISTS `{db}`.`{table}` ({job.table_ddl_columns}) "
            "PARTITIONED BY (`dt` STRING) STORED AS PARQUET"
        )
    return spark


def run_aggregation(job: AggregationJob, args: argparse.Namespace) -> int:
    """Start the streaming query and block until it stops (lifecycle contract); the exit code."""
    log = logging.getLogger(job.name)
    spark = _spark(job, args)
    schema_json = args.schema.read_text(encoding="utf-8")
    args.writer_schemas = writer_schemas(args)
    if args.writer_schemas is not None:
        log.info("writer schemas of %s: ids %s", args.subject, sorted(args.writer_schemas))
    tally = DecodeTally()
    final = args.emit == "final"
    sink = make_sink(
        args.sink, spark, args.table, args.query_name, job.merge,
        version=args.version, keep_versions=args.keep_versions,
        checkpoint=args.checkpoint, takeover=args.takeover_table, unique_keys=final,
    )
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", args.bootstrap_servers)
        .option("subscribe", args.topic)
        .option("startingOffsets", args.starting_offsets)
    )
    if args.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(args.max_offsets_per_trigger))
    raw = reader.load()
    if args.ending_offsets is not None:
        raw = raw.where(before_offsets(args.ending_offsets))
    events = job.decode(raw, schema_json, args).withWatermark("event_time", args.watermark)
    if final:
        events = final_stream(spark, events, job.aggregate, args.query_name, tally.add)

    def process(batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        counted = DECODE_ERROR in batch.columns
        if counted:
            batch = batch.persist()  # read from Kafka once for the count and the write
        try:
            decoded, undecodable = split_undecodable(batch)
            if final:  # the batch is the windows Spark closed; it counted undecodable records
                result: BatchResult = sink.write_batch(decoded, batch_id)
            else:
                watermark = batch_watermark_ms(spark, args.checkpoint, batch_id)
                result = sink.write_batch(job.aggregate(decoded, watermark), batch_id)
        finally:
            if counted:
                batch.unpersist()
        if undecodable:
            # counted once the batch is written: a batch that fails is run again and counted then
            tally.add(undecodable)
            log.warning("batch %s: undecodable records %s", batch_id, undecodable)
        log.info(
            "batch %s: %s sink, partitions %s, %.2fs %s%s", batch_id, args.sink,
            [(p.value, p.rows) for p in result.partitions], time.monotonic() - started, result.timings,
            f" ({result.skipped})" if result.skipped else "",
        )

    writer = (
        events.writeStream.queryName(args.query_name)
        .option("checkpointLocation", args.checkpoint)
        .foreachBatch(stop_guard(process, args.stop_file))
    )
    if final:
        writer = writer.outputMode("append")
    if args.available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=args.trigger)
    try:
        query = writer.start()
    except Exception as e:
        if final and "Append output mode not supported" in str(e):
            raise SystemExit(f"{job.name}: {APPEND_MODE_HINT}\n{e}") from e
        raise
    log.info("started %s (version %s) on %s -> %s", args.query_name, args.version, args.topic, args.table)
    return run_until_stopped(spark, query, args.stop_file, args.status_file, metrics=tally.snapshot)
