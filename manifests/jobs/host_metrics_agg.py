"""host-metrics-agg: Kafka HostMetricEvent stream -> 1-minute aggregates per (host, metric) in Hive.

Spark Structured Streaming (PySpark 3.5). Reads the Avro-encoded (schemaless binary) events of a
Kafka topic, keeps an event-time watermark, and in every micro-batch computes partial 1-minute
aggregates (samples, avg_value, max_value) that the pipectl sink merges into the table's ``dt``
partitions idempotently (see ``controller.jobkit.sink``). Events older than the watermark Spark
recorded for the batch are dropped, so a replayed batch sees exactly the same input.

Run by the controller with spark-submit (needs spark-sql-kafka and spark-avro on the classpath);
every connection detail is an argument, e.g.::

    spark-submit manifests/jobs/host_metrics_agg.py --bootstrap-servers 127.0.0.1:9092 \\
        --topic dev.telemetry.host_metrics --table dev_telemetry.host_metrics_1m \\
        --checkpoint .pipectl/checkpoints/dev/host-metrics/host-metrics-agg --trigger 10s \\
        --starting-offsets earliest --query-name dev-host-metrics-host-metrics-agg --version 1.0.0

``--status-file``/``--stop-file`` follow pipectl's lifecycle contract (``controller.jobkit.lifecycle``):
the latest StreamingQueryProgress JSON is kept in the status file, and the job stops after the
current batch once the stop file exists. ``--available-now`` processes what is in the topic and
exits (tests, backfills); with ``--ending-offsets`` it reads only the records before those offsets
(``pipectl replay --to-time``); ``--sink append`` swaps in the non-idempotent sink for benchmarks.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.avro.functions import from_avro

from controller.jobkit import BatchResult, MergeSpec, batch_watermark_ms, make_sink, split_table
from controller.jobkit.lifecycle import add_lifecycle_arguments, run_until_stopped, stop_guard
from controller.jobkit.sink import check_query_name

log = logging.getLogger("host_metrics_agg")

DEFAULT_SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "host_metric_event.avsc"

TABLE_DDL_COLUMNS = (
    "`host` STRING, `metric` STRING, `window_start` TIMESTAMP, "
    "`samples` BIGINT, `avg_value` DOUBLE, `max_value` DOUBLE"
)

MERGE_SPEC = MergeSpec(
    keys=("host", "metric", "window_start"),
    count="samples",
    weighted_mean=("avg_value",),
    maximum=("max_value",),
)

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


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError("--drop-fraction must be in [0, 1)")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="host_metrics_agg", description=__doc__.splitlines()[0])
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
    p.add_argument("--drop-fraction", type=fraction, default=0.0, help="DEFECT for demos: drop this share")
    p.add_argument("--sink", choices=["idempotent", "append"], default="idempotent")
    p.add_argument("--watermark", type=spark_interval, default="2 minutes", help="allowed event lateness")
    p.add_argument("--max-offsets-per-trigger", type=int, help="cap on Kafka records per micro-batch")
    p.add_argument("--keep-versions", type=int, default=3, help="partition directories kept per dt")
    p.add_argument("--schema", type=Path, default=DEFAULT_SCHEMA, help="Avro schema of the topic's values")
    p.add_argument("--create-table", action="store_true", help="create the database/table if missing")
    p.add_argument(
        "--takeover-table", action="store_true",
        help="let this checkpoint write a table another query/checkpoint wrote (events may count twice)",
    )
    add_lifecycle_arguments(p)  # --status-file (latest progress JSON), --stop-file (graceful stop)
    args = p.parse_args(argv)
    split_table(args.table)
    check_query_name(args.query_name)
    return args


# --- transformation -------------------------------------------------------------------------


def decode_events(raw: DataFrame, schema_json: str, drop_fraction: float = 0.0) -> DataFrame:
    """Kafka records -> (host, metric, value, event_time); undecodable records are dropped."""
    events = (
        raw.select(from_avro(F.col("value"), schema_json, {"mode": "PERMISSIVE"}).alias("e"))
        .select("e.host", "e.metric", "e.value", "e.event_time")
        .where(
            F.col("host").isNotNull()
            & F.col("metric").isNotNull()
            & F.col("value").isNotNull()
            & F.col("event_time").isNotNull()
        )
    )
    if drop_fraction > 0:
        # Deterministic by content: every run, replay and version drops the same events.
        bucket = F.pmod(F.xxhash64("host", "metric", "event_time", "value"), F.lit(1_000_000))
        events = events.where(bucket >= F.lit(int(drop_fraction * 1_000_000)))
    return events


def aggregate_minutes(events: DataFrame, watermark_ms: int | None = None) -> DataFrame:
    """Partial 1-minute aggregates of one batch, in the table's column order plus ``dt``."""
    if watermark_ms:
        events = events.where(F.col("event_time") >= F.expr(f"timestamp_millis({int(watermark_ms)})"))
    return (
        events.groupBy("host", "metric", F.window("event_time", "1 minute").start.alias("window_start"))
        .agg(
            F.count(F.lit(1)).cast("bigint").alias("samples"),
            F.avg("value").alias("avg_value"),
            F.max("value").alias("max_value"),
        )
        .withColumn("dt", F.date_format("window_start", "yyyy-MM-dd"))
    )


# --- main -----------------------------------------------------------------------------------


def build_spark(args: argparse.Namespace) -> SparkSession:
    spark = (
        SparkSession.builder.appName(f"pipectl:{args.query_name}")
        # dt and window_start are defined in UTC whatever the machine's zone.
        .config("spark.sql.session.timeZone", "UTC")
        .enableHiveSupport()
        .getOrCreate()
    )
    if args.create_table:
        db, table = split_table(args.table)
        spark.sql(f"CREATE DATABASE IF NOT EXISTS `{db}`")
        spark.sql(
            f"CREATE TABLE IF NOT EXISTS `{db}`.`{table}` ({TABLE_DDL_COLUMNS}) "
            "PARTITIONED BY (`dt` STRING) STORED AS PARQUET"
        )
    return spark


def run(args: argparse.Namespace) -> int:
    spark = build_spark(args)
    schema_json = args.schema.read_text(encoding="utf-8")
    sink = make_sink(
        args.sink, spark, args.table, args.query_name, MERGE_SPEC,
        version=args.version, keep_versions=args.keep_versions,
        checkpoint=args.checkpoint, takeover=args.takeover_table,
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
    events = decode_events(raw, schema_json, args.drop_fraction).withWatermark(
        "event_time", args.watermark
    )

    def process(batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        watermark = batch_watermark_ms(spark, args.checkpoint, batch_id)
        result: BatchResult = sink.write_batch(aggregate_minutes(batch, watermark), batch_id)
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
    if args.available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=args.trigger)
    query = writer.start()
    log.info("started %s (version %s) on %s -> %s", args.query_name, args.version, args.topic, args.table)
    return run_until_stopped(spark, query, args.stop_file, args.status_file)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
