"""host-metrics-agg: Kafka HostMetricEvent stream -> 1-minute aggregates per (host, metric) in Hive.

Spark Structured Streaming (PySpark 3.5). Reads the events of a Kafka topic in the Confluent wire
format (magic byte 0, 4-byte schema id, Avro body; ``controller.jobkit.wire``), decodes each with
its writer schema to the job's reader schema (``--schema``), keeps an event-time watermark, and in
every micro-batch computes partial 1-minute aggregates (samples, avg_value, max_value) that the
pipectl sink merges into the table's ``dt`` partitions idempotently (see ``controller.jobkit.sink``).
Events older than the watermark Spark recorded for the batch are dropped, so a replayed batch sees
exactly the same input. With ``--emit final`` Spark keeps the open windows in its state and each
window is written once, when the watermark passes it (``controller.jobkit.final_windows``).

The frame (arguments, Kafka reader, watermark, sink, lifecycle) is ``controller.jobkit.kafka_job``;
this file holds what is particular to the example: decoding, the aggregation and its merge rules.

Run by the controller with spark-submit (needs spark-sql-kafka and spark-avro on the classpath);
every connection detail is an argument, e.g.::

    spark-submit manifests/jobs/host_metrics_agg.py --bootstrap-servers 127.0.0.1:9092 \\
        --topic dev.telemetry.host_metrics --table dev_telemetry.host_metrics_1m \\
        --checkpoint .pipectl/checkpoints/dev/host-metrics/host-metrics-agg --trigger 10s \\
        --starting-offsets earliest --query-name dev-host-metrics-host-metrics-agg --version 1.0.0 \\
        --schema-registry http://127.0.0.1:8088/schema-registry --subject telemetry.host_metrics-value

With ``--schema-registry`` the writer schemas are the subject's versions when the job starts (the
API token in ``$PIPECTL_SCHEMA_REGISTRY_TOKEN``); without it every schema id is decoded with the
reader schema. Undecodable records (bad header, unknown id, corrupt body) are counted in the status
file and left out of the table, never dropped silently (``controller.jobkit.kafka_job``).

``--status-file``/``--stop-file`` follow pipectl's lifecycle contract (``controller.jobkit.lifecycle``):
the latest StreamingQueryProgress JSON is kept in the status file, and the job stops after the
current batch once the stop file exists. ``--available-now`` processes what is in the topic and
exits (tests, backfills); with ``--ending-offsets`` it reads only the records before those offsets
(``pipectl replay --to-time``); ``--sink append`` swaps in the non-idempotent sink for benchmarks.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from controller.jobkit import MergeSpec
from controller.jobkit.kafka_job import AggregationJob, base_parser, check_args, run_aggregation
from controller.jobkit.wire import DECODE_ERROR, decode_confluent

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

def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError("--drop-fraction must be in [0, 1)")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = base_parser("host_metrics_agg", __doc__.splitlines()[0], DEFAULT_SCHEMA)
    p.add_argument("--drop-fraction", type=fraction, default=0.0, help="DEFECT for demos: drop this share")
    return check_args(p.parse_args(argv))


# --- transformation -------------------------------------------------------------------------


def decode_events(
    raw: DataFrame, schema_json: str, drop_fraction: float = 0.0, writers: Mapping[int, str] | None = None
) -> DataFrame:
    """Kafka records -> (host, metric, value, event_time, decode_error); an undecodable record is
    kept with its reason in ``decode_error`` (the frame counts it and leaves it out of the sink)."""
    decoded = decode_confluent(raw, schema_json, writers).select(
        "event.host", "event.metric", "event.value", "event.event_time", DECODE_ERROR
    )
    incomplete = F.lit(False)
    for name in ("host", "metric", "value", "event_time"):
        incomplete = incomplete | F.col(name).isNull()
    error = F.when(F.col(DECODE_ERROR).isNull() & incomplete, F.lit("body")).otherwise(F.col(DECODE_ERROR))
    events = decoded.withColumn(DECODE_ERROR, error)
    if drop_fraction > 0:
        # Deterministic by content: every run, replay and version drops the same events.
        bucket = F.pmod(F.xxhash64("host", "metric", "event_time", "value"), F.lit(1_000_000))
        kept = bucket >= F.lit(int(drop_fraction * 1_000_000))
        events = events.where(F.col(DECODE_ERROR).isNotNull() | kept)
    return events


def aggregate_minutes(events: DataFrame, watermark_ms: int | None = None) -> DataFrame:
    """1-minute aggregates in the table's column order plus ``dt``: partial ones of one batch, or
    (``--emit final``, the whole stream) each window once, when the watermark passes it. Grouped by
    the window struct, not its start: Spark tracks the watermark through the struct."""
    if watermark_ms:
        events = events.where(F.col("event_time") >= F.expr(f"timestamp_millis({int(watermark_ms)})"))
    return (
        events.groupBy("host", "metric", F.window("event_time", "1 minute").alias("window"))
        .agg(
            F.count(F.lit(1)).cast("bigint").alias("samples"),
            F.avg("value").alias("avg_value"),
            F.max("value").alias("max_value"),
        )
        .select(
            "host", "metric", F.col("window.start").alias("window_start"), "samples", "avg_value", "max_value"
        )
        .withColumn("dt", F.date_format("window_start", "yyyy-MM-dd"))
    )


# --- main -----------------------------------------------------------------------------------


def _decode(raw: DataFrame, schema_json: str, args: argparse.Namespace) -> DataFrame:
    return decode_events(raw, schema_json, args.drop_fraction, args.writer_schemas)


JOB = AggregationJob("host_metrics_agg", _decode, aggregate_minutes, MERGE_SPEC, TABLE_DDL_COLUMNS)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_aggregation(JOB, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
