"""request-latency-agg: Kafka RequestLogEvent stream -> 1-minute latency aggregates per
(service, endpoint, status class) in Hive.

The second example pipeline, of another shape than host-metrics: string keys of three columns,
the status code folded into a class (``2xx`` … ``5xx``), and per window the request count, the
mean and the maximum latency. The frame (arguments, Kafka reader, watermark, idempotent sink,
lifecycle) is ``controller.jobkit.kafka_job``; this file holds only what is particular to it.

``--latency-factor`` is a DEFECT for the example's tests: it multiplies every latency (a units
bug). Totals are unchanged, so only a distribution statistic of the canary gate catches it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.avro.functions import from_avro

from controller.jobkit import MergeSpec
from controller.jobkit.kafka_job import AggregationJob, base_parser, check_args, run_aggregation

DEFAULT_SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "request_log_event.avsc"

TABLE_DDL_COLUMNS = (
    "`service` STRING, `endpoint` STRING, `status_class` STRING, `window_start` TIMESTAMP, "
    "`requests` BIGINT, `avg_latency_ms` DOUBLE, `max_latency_ms` DOUBLE"
)

MERGE_SPEC = MergeSpec(
    keys=("service", "endpoint", "status_class", "window_start"),
    count="requests",
    weighted_mean=("avg_latency_ms",),
    maximum=("max_latency_ms",),
)


def decode(raw: DataFrame, schema_json: str, args: argparse.Namespace) -> DataFrame:
    """Kafka records -> (service, endpoint, status_class, latency_ms, event_time); undecodable
    records are dropped."""
    events = (
        raw.select(from_avro(F.col("value"), schema_json, {"mode": "PERMISSIVE"}).alias("e"))
        .select("e.service", "e.endpoint", "e.status", "e.latency_ms", "e.event_time")
        .where(
            F.col("service").isNotNull()
            & F.col("endpoint").isNotNull()
            & F.col("status").isNotNull()
            & F.col("latency_ms").isNotNull()
            & F.col("event_time").isNotNull()
        )
    )
    latency = F.col("latency_ms") * F.lit(float(args.latency_factor))
    return events.select(
        "service",
        "endpoint",
        F.concat(F.floor(F.col("status") / 100).cast("string"), F.lit("xx")).alias("status_class"),
        latency.alias("latency_ms"),
        "event_time",
    )


def aggregate(events: DataFrame, watermark_ms: int | None = None) -> DataFrame:
    """Partial 1-minute aggregates of one batch, in the table's column order plus ``dt``."""
    if watermark_ms:
        events = events.where(F.col("event_time") >= F.expr(f"timestamp_millis({int(watermark_ms)})"))
    window = F.window("event_time", "1 minute").start.alias("window_start")
    return (
        events.groupBy("service", "endpoint", "status_class", window)
        .agg(
            F.count(F.lit(1)).cast("bigint").alias("requests"),
            F.avg("latency_ms").alias("avg_latency_ms"),
            F.max("latency_ms").alias("max_latency_ms"),
        )
        .withColumn("dt", F.date_format("window_start", "yyyy-MM-dd"))
    )


JOB = AggregationJob("request_latency_agg", decode, aggregate, MERGE_SPEC, TABLE_DDL_COLUMNS)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = base_parser("request_latency_agg", __doc__.splitlines()[0], DEFAULT_SCHEMA)
    p.add_argument("--latency-factor", type=float, default=1.0, help="DEFECT for tests: scale latencies")
    return check_args(p.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_aggregation(JOB, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
