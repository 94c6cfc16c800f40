"""``--emit final``: a job's windows as Spark's own stateful aggregation in append output mode.

With the default (``--emit updates``) every micro-batch writes partial aggregates of the windows
its events fall in, and the sink combines them with what the table holds: an open window is
visible within a trigger interval, and on an Iceberg table each batch that touches a window
already written is a ``MERGE``. With ``--emit final`` Spark keeps the open windows in its state
store (checkpointed with the offsets) and emits a window once, when the watermark passes its end:
every batch then appends rows whose keys the table cannot hold yet, and the exactly-once Iceberg
sink commits a plain append tagged with the batch id (no ``MERGE``, no combining of partials). A
window becomes visible ``window length + --watermark + trigger`` after its first event, so a
1-minute window with ``--watermark 30s`` and a 10 s trigger shows after about 100 s.

Replays stay exact: a batch replayed after a crash starts from the state of the batch before it,
emits the same windows, and the sink skips it when its id is committed already. The job's
``aggregate`` must group by the window *struct* (``F.window(...)``, then select ``window.start``):
Spark tracks the watermark through it, and not through ``window.start`` alone.

Undecodable records are counted with ``Dataset.observe`` and read from each batch's progress by a
``StreamingQueryListener`` (the aggregated batch no longer holds them).
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming.listener import StreamingQueryListener

from controller.jobkit.wire import DECODE_ERROR, REASONS

EMIT_CHOICES = ("updates", "final")
METRIC = "pipectl_undecodable"
APPEND_MODE_HINT = (
    "--emit final runs the aggregation in Spark's append output mode: group by the window struct "
    "(F.window(...).alias('window')) and select window.start afterwards, on the event_time column "
    "the frame sets the watermark on"
)


class UndecodableListener(StreamingQueryListener):  # type: ignore[misc]
    """Adds each batch's observed undecodable counts (``METRIC``) of query ``name`` to ``tally``."""

    def __init__(self, name: str, add: Any) -> None:
        self.name = name
        self.add = add

    def onQueryStarted(self, event: Any) -> None:
        pass

    def onQueryProgress(self, event: Any) -> None:
        progress = event.progress
        if progress.name != self.name:
            return
        row = (progress.observedMetrics or {}).get(METRIC)
        if row is None:
            return
        counts = {r: int(row[r] or 0) for r in REASONS if r in row.asDict()}
        counts = {r: n for r, n in counts.items() if n}
        if counts:
            self.add(counts)

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        pass


def final_stream(
    spark: SparkSession, events: DataFrame, aggregate: Any, query_name: str, add_undecodable: Any
) -> DataFrame:
    """``aggregate`` applied to the whole (watermarked) event stream, undecodable records counted
    and left out; write it with ``outputMode("append")``."""
    if DECODE_ERROR in events.columns:
        counts = [F.count(F.when(F.col(DECODE_ERROR) == r, True)).alias(r) for r in REASONS]
        events = events.observe(METRIC, *counts)
        spark.streams.addListener(UndecodableListener(query_name, add_undecodable))
        events = events.where(F.col(DECODE_ERROR).isNull()).drop(DECODE_ERROR)
    out: DataFrame = aggregate(events, None)
    return out
