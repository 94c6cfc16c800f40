"""Job-side half of pipectl's lifecycle contract for Spark Structured Streaming jobs.

The runner appends two arguments to every job it starts:

``--status-file PATH``
    The job writes the latest ``StreamingQueryProgress`` (its JSON, as ``query.lastProgress``)
    there atomically (temp file + rename) whenever a new progress is reported, and once more when
    it stops. The controller reads it to observe batch id, rates, offsets and watermark.
``--stop-file PATH``
    When the file appears the job stops gracefully *after* the current batch: it waits until
    ``query.status["isTriggerActive"]`` is false (the batch's commit is written before that flag
    drops), then ``query.stop()``, writes the final progress, and exits 0.

Usage in a job::

    parser = argparse.ArgumentParser()
    add_lifecycle_arguments(parser)
    ...
    query = df.writeStream...start()
    sys.exit(run_until_stopped(spark, query, args.stop_file, args.status_file))

Only pyspark and the standard library are imported: jobs run outside the controller.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql.streaming.query import StreamingQuery


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


class ProgressWriter:
    """Writes ``query.lastProgress`` to the status file when it changed since the last write."""

    def __init__(self, query: StreamingQuery, status_file: str | None):
        self.query = query
        self.status_file = status_file
        self._last: tuple[Any, Any] | None = None

    def poll(self, *, force: bool = False) -> dict[str, Any] | None:
        progress = self.query.lastProgress
        if progress is None or self.status_file is None:
            return progress
        key = (progress.get("runId"), progress.get("timestamp"))
        if force or key != self._last:
            write_json_atomic(self.status_file, progress)
            self._last = key
        return progress


def stop_after_current_batch(query: StreamingQuery, poll: float = 0.05, timeout: float | None = None) -> None:
    """Wait until no trigger is running (the current batch committed), then stop the query.

    Spark has no "stop after this batch" call; between the flag dropping and ``stop()`` a new
    trigger could begin (the window is the few milliseconds between two status reads, so with a
    processing-time trigger it needs the interval to elapse exactly then). If it does, that batch
    is interrupted before its commit and simply re-run from the checkpoint on the next start.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while query.isActive and query.status.get("isTriggerActive"):
        if deadline is not None and time.monotonic() > deadline:
            break
        time.sleep(poll)
    query.stop()


def run_until_stopped(
    spark: SparkSession,
    query: StreamingQuery,
    stop_file: str | None,
    status_file: str | None,
    poll: float = 1.0,
) -> int:
    """Run ``query`` until the stop file appears (graceful stop, exit code 0) or the query ends.

    The progress is written to ``status_file`` every ``poll`` seconds when it changed; at the
    end the Spark session is stopped, so the caller only has to exit with the returned code.

    Returns the process exit code: 0 after a graceful stop or a clean end (e.g. an
    ``availableNow`` trigger), 1 when the query failed (its exception is printed to stderr).
    """
    writer = ProgressWriter(query, status_file)
    stop_path = Path(stop_file) if stop_file else None
    try:
        while query.isActive:
            writer.poll()
            if stop_path is not None and stop_path.exists():
                print(f"pipectl: stop file {stop_path} found; stopping after the current batch", flush=True)
                stop_after_current_batch(query)
                break
            time.sleep(poll)
    finally:
        try:
            writer.poll(force=True)
        except Exception as exc:  # the query may be gone with its session; the last write stands
            print(f"pipectl: final progress not written: {exc}", flush=True)
    error = query.exception()
    spark.stop()
    if error is not None:
        print(f"pipectl: query {query.name} failed: {error}", flush=True)
        return 1
    return 0
