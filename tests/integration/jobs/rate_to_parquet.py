"""Test job without Kafka: the rate source → parquet, run under pipectl's lifecycle contract.

Args: ``--checkpoint``, ``--output``, ``--query-name``, ``--version``, ``--trigger`` (e.g. ``2s``),
``--rows-per-second``, plus the runner's ``--status-file``/``--stop-file``.
"""

from __future__ import annotations

import argparse
import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from controller.jobkit.lifecycle import add_lifecycle_arguments, run_until_stopped


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--query-name", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--trigger", default="2s")
    p.add_argument("--rows-per-second", type=int, default=5)
    add_lifecycle_arguments(p)
    args = p.parse_args(argv)

    spark = SparkSession.builder.appName(args.query_name).getOrCreate()
    rows = (
        spark.readStream.format("rate").option("rowsPerSecond", args.rows_per_second).load()
        .withColumn("version", F.lit(args.version))
    )
    query = (
        rows.writeStream.format("parquet")
        .option("path", args.output)
        .option("checkpointLocation", args.checkpoint)
        .queryName(args.query_name)
        .trigger(processingTime=args.trigger.replace("s", " seconds"))
        .start()
    )
    return run_until_stopped(spark, query, args.stop_file, args.status_file, poll=0.5)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
