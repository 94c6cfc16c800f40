"""Job-side toolkit for pipectl-managed Spark jobs (imports only pyspark and the stdlib).

It ships with the job, not with the controller: ``sink`` holds the idempotent sink contract.
"""

from controller.jobkit.sink import (
    AppendSink,
    BatchResult,
    IdempotentPartitionSink,
    MergeSpec,
    PartitionWrite,
    SinkError,
    batch_watermark_ms,
    check_ident,
    make_sink,
    merge_frames,
    merge_rows,
    quote_ident,
    split_table,
)

__all__ = [
    "AppendSink",
    "BatchResult",
    "IdempotentPartitionSink",
    "MergeSpec",
    "PartitionWrite",
    "SinkError",
    "batch_watermark_ms",
    "check_ident",
    "make_sink",
    "merge_frames",
    "merge_rows",
    "quote_ident",
    "split_table",
]
