"""Test job: Kafka topic → parquet files, run under pipectl's lifecycle contract.

Takes the args pipectl's desired state gives a job (``--bootstrap-servers``, ``--topic``,
``--table`` (unused here), ``--checkpoint``, ``--trigger``, ``--starting-offsets``,
``--query-name``, ``--version``) plus ``--output`` (a parquet directory), and the runner's
``--status-file``/``--stop-file``. Each micro-batch appends its rows with the batch id and job
version to ``--output`` and logs ``start <batch>``/``done <batch>`` lines to
``<output>/_batches.log`` so a test can see which batch was in flight when a stop was asked for.
``--batch-seconds`` makes every batch last at least that long.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from controller.jobkit.lifecycle import add_lifecycle_arguments, run_until_stopped, stop_guard


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--table", default=None)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--trigger", default="2 seconds")
    p.add_argument("--starting-offsets", default="earliest")
    p.add_argument("--query-name", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--max-offsets-per-trigger", type=int, default=None)
    p.add_argument("--batch-seconds", type=float, default=0.0)
    add_lifecycle_arguments(p)
    args = p.parse_args(argv)

    spark = SparkSession.builder.appName(args.query_name).getOrCreate()
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", args.bootstrap_servers)
        .option("subscribe", args.topic)
        .option("startingOffsets", args.starting_offsets)
    )
    if args.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", args.max_offsets_per_trigger)
    rows = reader.load().select(
        F.col("value").cast("string").alias("value"), "partition", "offset",
        F.lit(args.version).alias("version"),
    )
    log_path = os.path.join(args.output, "_batches.log")
    os.makedirs(args.output, exist_ok=True)

    def write_batch(df: DataFrame, batch_id: int) -> None:
        with open(log_path, "a") as f:
            f.write(f"start {batch_id} {args.version}\n")
        began = time.monotonic()
        df.withColumn("batch_id", F.lit(batch_id)).write.mode("append").parquet(args.output)
        time.sleep(max(0.0, args.batch_seconds - (time.monotonic() - began)))
        with open(log_path, "a") as f:
            f.write(f"done {batch_id} {args.version}\n")

    trigger = args.trigger if " " in args.trigger else args.trigger.replace("s", " seconds")
    query = (
        rows.writeStream.foreachBatch(stop_guard(write_batch, args.stop_file))
        .option("checkpointLocation", args.checkpoint)
        .queryName(args.query_name)
        .trigger(processingTime=trigger)
        .start()
    )
    return run_until_stopped(spark, query, args.stop_file, args.status_file, poll=0.5)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
