"""Job-side half of pipectl's lifecycle contract for Spark Structured Streaming jobs.

The runner appends two arguments to every job it starts:

``--status-file PATH``
    The job writes the latest ``StreamingQueryProgress`` (its JSON, as ``query.lastProgress``)
    there atomically (temp file + rename) whenever a new progress is reported, and once more when
    it stops. The controller reads it to observe batch id, rates, offsets and watermark. A job
    may add its own figures under the key ``pipectl`` (``run_until_stopped(..., metrics=)``), e.g.
    ``{"undecodableRecords": 3}`` (``controller.jobkit.kafka_job``).
``--stop-file PATH``
    When the file appears the job stops gracefully *after* the current batch and exits 0.

Spark has no "stop after this batch" call, and ``query.stop()`` interrupts a running batch. So
once the stop file exists, ``run_until_stopped`` stops the query at the first moment no batch
runs: when ``query.status["isTriggerActive"]`` is false (a batch's commit is written before that
flag drops). A query that is behind runs its batches back to back and that moment may never
come; for ``foreachBatch`` sinks wrap the batch function in ``stop_guard``: once the stop file
exists it refuses to *start* the next batch (raising before any side effect), so the query ends
right after the last complete batch. That next batch's offsets are already in the checkpoint's
offset log without a commit, so Spark runs exactly that batch again on the next start.

Usage in a job::

    parser = argparse.ArgumentParser()
    add_lifecycle_arguments(parser)
    args = parser.parse_args()
    ...
    query = df.writeStream.foreachBatch(stop_guard(write_batch, args.stop_file))...start()
    sys.exit(run_until_stopped(spark, query, args.stop_file, args.status_file))

Only pyspark and the standard library are imported: jobs run outside the controller.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming.query import StreamingQuery

STOP_MARKER = "pipectl-stop-requested"
"""In the message of the error ``stop_guard`` ends a query with; ``run_until_stopped`` looks for it."""

BatchFunction = Callable[[DataFrame, int], None]


class StopRequested(RuntimeError):
    """Raised by ``stop_guard`` instead of starting a batch after a stop was requested."""


def add_lifecycle_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--status-file`` and ``--stop-file`` (both optional, so a job also runs by hand)."""
    parser.add_argument("--status-file", default=None, help="where to write the latest progress JSON")
    parser.add_argument("--stop-file", default=None, help="stop after the current batch once this exists")


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as JSON to ``path`` so a reader sees the old or the new file, never a torn one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stop_guard(fn: BatchFunction, stop_file: str | None) -> BatchFunction:
    """Wrap a ``foreachBatch`` function so that no batch starts once the stop file exists."""
    if stop_file is None:
        return fn

    def guarded(df: DataFrame, batch_id: int) -> None:
        if os.path.exists(stop_file):
            raise StopRequested(f"{STOP_MARKER}: batch {batch_id} not started")
        fn(df, batch_id)

    return guarded


class ProgressWriter:
    """Writes ``query.lastProgress`` to the status file when it changed since the last write."""

    def __init__(
        self, query: StreamingQuery, status_file: str | None,
        metrics: Callable[[], dict[str, Any]] | None = None,
    ):
        self.query = query
        self.status_file = status_file
        self.metrics = metrics
        self._last: tuple[Any, Any] | None = None

    def poll(self, *, force: bool = False) -> dict[str, Any] | None:
        progress = self.query.lastProgress
        if progress is None or self.status_file is None:
            return progress
        key = (progress.get("runId"), progress.get("timestamp"))
        if force or key != self._last:
            if self.metrics is not None:
                # read after lastProgress: the batch it reports has run its foreachBatch already
                progress = {**progress, "pipectl": self.metrics()}
            write_json_atomic(self.status_file, progress)
            self._last = key
        return progress


def run_until_stopped(
    spark: SparkSession,
    query: StreamingQuery,
    stop_file: str | None,
    status_file: str | None,
    poll: float = 1.0,
    metrics: Callable[[], dict[str, Any]] | None = None,
) -> int:
    """Run ``query`` until the stop file appears (graceful stop, exit code 0) or the query ends.

    The progress is written to ``status_file`` every ``poll`` seconds when it changed (every
    50 ms while stopping); at the end the Spark session is stopped, so the caller only has to
    exit with the returned code: 0 after a graceful stop or a clean end (e.g. an
    ``availableNow`` trigger), 1 when the query failed (its error is printed).
    """
    writer = ProgressWriter(query, status_file, metrics)
    stop_path = Path(stop_file) if stop_file else None
    stopping = False
    try:
        while query.isActive:
            writer.poll()
            if stop_path is not None and stop_path.exists():
                if not stopping:
                    print(f"pipectl: {stop_path} found; stopping after the current batch", flush=True)
                    stopping = True
                if not query.status.get("isTriggerActive"):
                    query.stop()
                    break
                time.sleep(0.05)
                continue
            time.sleep(poll)
    finally:
        try:
            writer.poll(force=True)
        except Exception as exc:  # the query may be gone with its session; the last write stands
            print(f"pipectl: final progress not written: {exc}", flush=True)
    error = query.exception()
    spark.stop()
    if error is not None and not (stopping and STOP_MARKER in str(error)):
        print(f"pipectl: query {query.name} failed: {error}", flush=True)
        return 1
    print(f"pipectl: query {query.name} {'stopped' if stopping else 'ended'}", flush=True)
    return 0
