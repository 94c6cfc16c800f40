"""The sink contract for pipectl-managed Spark jobs: idempotent ``foreachBatch`` writes.

A streaming job hands each micro-batch of *partial aggregates* to :class:`IdempotentPartitionSink`.
For every partition value the batch touches, the sink

1. reads the rows already in that partition and merges them with the batch's rows
   (:class:`MergeSpec`: counts add up, means are weighted by the count, maxima/minima combine),
2. writes the merged partition into a NEW directory ``<table>/<col>=<value>/_v=<batchId>-<writer>``,
3. swaps the partition to it with one metastore call (``ALTER TABLE … PARTITION … SET LOCATION``
   or ``ADD PARTITION … LOCATION``), so readers see either the old or the new files, never a mix,
4. deletes all but the newest few ``_v=`` directories of that partition,

and finally writes a commit marker ``<table>/_pipectl_sink/<writer>/<batchId>.json``. ``writer``
is ``<query name>-<first 8 characters of the checkpoint's query id>``: Spark numbers batches per
checkpoint, so the id keeps a new checkpoint's batch 0 apart from an old one's.

Replays are exact. Spark re-runs a batch after a crash with the same input (offsets and
watermark come from its offset log). A batch whose marker exists is skipped. A partition whose
current location already is this batch's directory was swapped before the crash and is skipped;
every other partition still points at the pre-batch data, so merging again gives the same rows.

A table has exactly one writer, recorded in ``<table>/_pipectl_sink/_writer.json``: a second
query, or the same query on a new checkpoint, would merge events the table already counts, so
the sink refuses (``SinkError``) unless told to take the table over. Blue/green versions and
replays therefore write their own tables.

:class:`AppendSink` is the plain non-idempotent variant (``INSERT INTO``), kept for benchmarks.

This module imports only pyspark and the standard library: it ships with the job, not the controller.
Beside it: ``checks`` (identifier and literal checks, ``SinkError``), ``merge`` (the merge math),
``hadoop_fs`` (filesystem access, the batch watermark); their public names are importable from here.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from controller.jobkit.checks import HIVE_IDENT_RE as HIVE_IDENT_RE
from controller.jobkit.checks import PARTITION_VALUE_RE as PARTITION_VALUE_RE
from controller.jobkit.checks import QUERY_NAME_RE as QUERY_NAME_RE
from controller.jobkit.checks import SinkError as SinkError
from controller.jobkit.checks import check_ident as check_ident
from controller.jobkit.checks import check_partition_value as check_partition_value
from controller.jobkit.checks import check_query_name as check_query_name
from controller.jobkit.checks import quote_ident as quote_ident
from controller.jobkit.checks import split_table as split_table
from controller.jobkit.checks import sql_string as sql_string
from controller.jobkit.hadoop_fs import HadoopFs as HadoopFs
from controller.jobkit.hadoop_fs import batch_watermark_ms as batch_watermark_ms
from controller.jobkit.merge import MergeSpec as MergeSpec
from controller.jobkit.merge import merge_frames as merge_frames
from controller.jobkit.merge import merge_rows as merge_rows

if TYPE_CHECKING:
    from controller.jobkit.iceberg_sink import IcebergSink

log = logging.getLogger("pipectl.jobkit.sink")

VERSION_DIR_RE = re.compile(r"\A_v=([0-9]+)-(.+)\Z")
MARKER_DIR = "_pipectl_sink"
WRITER_FILE = "_writer.json"


# --- sinks ----------------------------------------------------------------------------------


@dataclass
class PartitionWrite:
    value: str
    rows: int
    location: str
    skipped: bool = False


@dataclass
class BatchResult:
    """What one call of a sink did (also written as the commit marker)."""

    query: str
    batch_id: int
    version: str
    skipped: str | None = None
    partitions: list[PartitionWrite] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def lap(self, phase: str, since: float) -> float:
        """Record the seconds spent in ``phase`` since ``since``; return now."""
        now = time.monotonic()
        self.timings[phase] = round(self.timings.get(phase, 0.0) + now - since, 3)
        return now

    def to_json(self) -> str:
        return json.dumps(
            {
                "query": self.query,
                "batchId": self.batch_id,
                "version": self.version,
                "skipped": self.skipped,
                "partitions": [p.__dict__ for p in self.partitions],
                "seconds": round(self.seconds, 3),
                "timings": self.timings,
                "committedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            sort_keys=True,
        )


@dataclass(frozen=True)
class _TableInfo:
    location: str
    data_columns: tuple[tuple[str, str], ...]  # (name, type) in table order
    partition_columns: tuple[str, ...]


class _TableSink:
    def __init__(self, spark: SparkSession, table: str, query_name: str, version: str = "") -> None:
        self.spark = spark
        self.db, self.table = split_table(table)
        self.qualified = f"{quote_ident(self.db)}.{quote_ident(self.table)}"
        self.query = check_query_name(query_name)
        self.version = version
        self._info: _TableInfo | None = None

    def table_info(self) -> _TableInfo:
        if self._info is None:
            cols = self.spark.catalog.listColumns(f"{self.db}.{self.table}")
            data = tuple((check_ident(c.name, "column"), c.dataType) for c in cols if not c.isPartition)
            parts = tuple(check_ident(c.name, "column") for c in cols if c.isPartition)
            location = None
            for row in self.spark.sql(f"DESCRIBE TABLE EXTENDED {self.qualified}").collect():
                if row["col_name"] == "Location":
                    location = str(row["data_type"]).strip()
            if not location:
                raise SinkError(f"table {self.db}.{self.table} has no location")
            self._info = _TableInfo(location, data, parts)
        return self._info

    def _select_table_columns(self, df: DataFrame) -> DataFrame:
        info = self.table_info()
        missing = [n for n, _ in info.data_columns if n not in df.columns]
        missing += [p for p in info.partition_columns if p not in df.columns]
        if missing:
            raise SinkError(f"batch lacks table columns {missing} of {self.db}.{self.table}")
        return df.select(
            *[F.col(n).cast(t).alias(n) for n, t in info.data_columns],
            *[F.col(p).cast("string").alias(p) for p in info.partition_columns],
        )

    def __call__(self, df: DataFrame, batch_id: int) -> None:
        self.write_batch(df, batch_id)

    def write_batch(self, df: DataFrame, batch_id: int) -> BatchResult:
        raise NotImplementedError


class AppendSink(_TableSink):
    """Plain ``INSERT INTO`` of each batch: not idempotent (replays and late data duplicate rows)."""

    def write_batch(self, df: DataFrame, batch_id: int) -> BatchResult:
        t0 = time.monotonic()
        self.spark.conf.set("hive.exec.dynamic.partition", "true")
        self.spark.conf.set("hive.exec.dynamic.partition.mode", "nonstrict")
        out = self._select_table_columns(df)
        out.write.insertInto(f"{self.db}.{self.table}")
        result = BatchResult(self.query, batch_id, self.version, seconds=time.monotonic() - t0)
        return result


class IdempotentPartitionSink(_TableSink):
    """Read-merge-write each touched partition into a new directory, then swap its location.

    ``df`` must hold partial aggregates with the table's columns (including the partition
    column); rows are combined with the partition's existing rows according to ``spec``.
    """

    def __init__(
        self,
        spark: SparkSession,
        table: str,
        query_name: str,
        spec: MergeSpec,
        *,
        version: str = "",
        keep_versions: int = 3,
        keep_markers: int = 100,
        files_per_partition: int = 1,
        checkpoint: str | None = None,
        takeover: bool = False,
    ) -> None:
        super().__init__(spark, table, query_name, version)
        self.spec = spec
        self.keep_versions = max(1, keep_versions)
        self.keep_markers = max(1, keep_markers)
        self.files_per_partition = max(1, files_per_partition)
        self.checkpoint = checkpoint
        self.takeover = takeover
        self.fs = HadoopFs(spark)
        self._writer: str | None = None

    # -- identity and layout

    @property
    def writer(self) -> str:
        """``<query>-<first 8 of the checkpoint's query id>``: batch ids count per checkpoint."""
        if self._writer is None:
            self._writer = self._claim()
        return self._writer

    def _query_id(self) -> str:
        if not self.checkpoint:
            return ""
        text = self.fs.read_text(self.fs.path(self.checkpoint, "metadata"))
        try:
            return str(json.loads(text or "{}").get("id") or "")
        except ValueError:
            return ""

    def _claim(self) -> str:
        """Record this query as the table's only writer, or refuse to write.

        The merge adds a batch to what the partition holds, so a second writer, or this query
        restarted on a new checkpoint (Spark would re-read events already merged), would count
        events twice. ``takeover`` is the explicit way to hand a table to a new checkpoint.
        """
        qid = self._query_id()
        mine = {"query": self.query, "queryId": qid, "checkpoint": self.checkpoint}
        path = self.fs.path(self.table_info().location, MARKER_DIR, WRITER_FILE)
        text = self.fs.read_text(path)
        current = json.loads(text) if text else None
        if current and (current.get("query"), current.get("queryId")) != (self.query, qid):
            if not self.takeover:
                raise SinkError(
                    f"{self.db}.{self.table} is already written by query {current.get('query')!r} "
                    f"(id {current.get('queryId') or '-'}, checkpoint {current.get('checkpoint')}); "
                    f"{self.query!r} (id {qid or '-'}) would merge the same events a second time. "
                    "Give each writer its own table, or hand the table over explicitly (takeover)."
                )
            log.warning("%s: taking %s.%s over from %s", self.query, self.db, self.table, current)
        if current is None or any(current.get(k) != v for k, v in mine.items()):
            self.fs.write_text_atomic(
                path, json.dumps({**mine, "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
            )
        return f"{self.query}-{qid[:8]}" if qid else self.query

    def version_dir_name(self, batch_id: int) -> str:
        return f"_v={int(batch_id)}-{self.writer}"

    def marker_path(self, batch_id: int) -> Any:
        return self.fs.path(self.table_info().location, MARKER_DIR, self.writer, f"{int(batch_id)}.json")

    def committed(self, batch_id: int) -> bool:
        return bool(self.fs.exists(self.marker_path(batch_id)))

    def last_committed_batch(self) -> int | None:
        names = self.fs.list_names(self.fs.path(self.table_info().location, MARKER_DIR, self.writer))
        ids = [int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit()]
        return max(ids) if ids else None

    def _partition_column(self) -> str:
        parts = self.table_info().partition_columns
        if len(parts) != 1:
            raise SinkError(
                f"{self.db}.{self.table}: the idempotent sink needs exactly one partition column, has {parts}"
            )
        return parts[0]

    def partition_location(self, value: str) -> str | None:
        pc = quote_ident(self._partition_column())
        try:
            rows = self.spark.sql(
                f"DESCRIBE TABLE EXTENDED {self.qualified} PARTITION ({pc} = {sql_string(value)})"
            ).collect()
        except AnalysisException as exc:
            if _is_missing_partition(exc):
                return None
            raise
        for row in rows:
            if row["col_name"] == "Location":
                return str(row["data_type"]).strip()
        return None

    # -- the batch

    def write_batch(self, df: DataFrame, batch_id: int) -> BatchResult:
        t0 = time.monotonic()
        info = self.table_info()
        result = BatchResult(self.writer, int(batch_id), self.version)
        pc = self._partition_column()
        data_names = [n for n, _ in info.data_columns]
        if set(data_names) != set(self.spec.all_columns):
            raise SinkError(
                f"merge spec columns {sorted(self.spec.all_columns)} do not match the data columns "
                f"{sorted(data_names)} of {self.db}.{self.table}"
            )
        if self.committed(batch_id):
            result.skipped = "batch already committed"
            log.info("%s batch %s: already committed, skipping", self.query, batch_id)
        else:
            self._write(df, int(batch_id), info, pc, result)
            self._write_marker(result)
        result.seconds = time.monotonic() - t0
        return result

    def _write(self, df: DataFrame, batch_id: int, info: _TableInfo, pc: str, result: BatchResult) -> None:
        t = time.monotonic()
        # The batch is read once here; everything after works on the materialized rows. Rows
        # need not be unique per key: the merge below combines them with the partition's rows.
        batch = self._select_table_columns(df).localCheckpoint(eager=True)
        values = sorted(check_partition_value(r[0]) for r in batch.select(pc).distinct().collect())
        t = result.lap("aggregate", t)
        if not values:
            result.skipped = "empty batch"
            return
        target = self.version_dir_name(batch_id)
        todo: list[str] = []
        current: dict[str, str | None] = {}
        for v in values:
            loc = self.partition_location(v)
            current[v] = loc
            if loc is not None and _basename(loc) == target:
                # Swapped by an earlier attempt of this batch that died before its marker.
                result.partitions.append(PartitionWrite(v, -1, loc, skipped=True))
            else:
                todo.append(v)
        t = result.lap("metastore", t)
        if todo:
            self.spark.catalog.refreshTable(f"{self.db}.{self.table}")
            existing = [v for v in todo if current[v] is not None]
            frames = [batch.where(F.col(pc).isin(todo))]
            if existing:
                old = self._select_table_columns(
                    self.spark.table(f"{self.db}.{self.table}").where(F.col(pc).isin(existing))
                )
                frames.insert(0, old)
            merged = self._select_table_columns(merge_frames(frames, self.spec, pc))
            merged = merged.localCheckpoint(eager=True)
            counts = {r[0]: int(r[1]) for r in merged.groupBy(pc).count().collect()}
            t = result.lap("merge", t)
            for v in todo:
                loc = self._write_partition(merged, pc, v, target, existed=current[v] is not None)
                current[v] = loc
                result.partitions.append(PartitionWrite(v, counts.get(v, 0), loc))
            self.spark.catalog.refreshTable(f"{self.db}.{self.table}")
            t = result.lap("write_swap", t)
        for v in values:
            self._cleanup(pc, v, _basename(current[v] or ""))
        result.lap("cleanup", t)

    def _write_partition(self, merged: DataFrame, pc: str, value: str, target: str, existed: bool) -> str:
        info = self.table_info()
        path = self.fs.path(info.location, f"{pc}={value}", target)
        location = str(path.toString())
        sql_string(location)  # reject before writing anything
        part = (
            merged.where(F.col(pc) == value)
            .select(*[n for n, _ in info.data_columns])
            .coalesce(self.files_per_partition)
            .sortWithinPartitions(*self.spec.keys)
        )
        part.write.mode("overwrite").parquet(location)
        spec = f"PARTITION ({quote_ident(pc)} = {sql_string(value)})"
        loc = sql_string(location)
        if existed:
            self.spark.sql(f"ALTER TABLE {self.qualified} {spec} SET LOCATION {loc}")
        else:
            self.spark.sql(f"ALTER TABLE {self.qualified} ADD IF NOT EXISTS {spec} LOCATION {loc}")
        log.info("%s: partition %s=%s -> %s", self.query, pc, value, location)
        return location

    def _cleanup(self, pc: str, value: str, current: str) -> None:
        """Keep the newest ``keep_versions`` directories of the partition, the live one included.

        Older ones may still be read by a query that planned before the swap; they go only
        once ``keep_versions - 1`` newer swaps happened. The table has a single writer (see
        ``_claim``), so directories of earlier writers are pruned too (by modification time).
        """
        parent = self.fs.path(self.table_info().location, f"{pc}={value}")
        old = [
            (mtime, name)
            for name, mtime in self.fs.list_dirs_mtime(parent)
            if VERSION_DIR_RE.fullmatch(name) and name != current
        ]
        old.sort(reverse=True)
        for _, name in old[self.keep_versions - 1 :]:
            self.fs.delete(self.fs.path(self.table_info().location, f"{pc}={value}", name))

    def _write_marker(self, result: BatchResult) -> None:
        self.fs.write_text_atomic(self.marker_path(result.batch_id), result.to_json())
        folder = self.fs.path(self.table_info().location, MARKER_DIR, self.writer)
        ids = sorted(
            int(n[:-5]) for n in self.fs.list_names(folder) if n.endswith(".json") and n[:-5].isdigit()
        )
        for old in ids[: -self.keep_markers]:
            self.fs.delete(self.fs.path(self.table_info().location, MARKER_DIR, self.writer, f"{old}.json"))


def _is_missing_partition(exc: AnalysisException) -> bool:
    cls = exc.getErrorClass() or ""
    return cls in {"PARTITIONS_NOT_FOUND", "NO_SUCH_PARTITION"} or "cannot be found" in str(exc)


def _basename(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1]


def make_sink(
    kind: str,
    spark: SparkSession,
    table: str,
    query_name: str,
    spec: MergeSpec,
    *,
    version: str = "",
    keep_versions: int = 3,
    checkpoint: str | None = None,
    takeover: bool = False,
    unique_keys: bool = False,
) -> _TableSink | IcebergSink:
    """Build the sink a job asked for with ``--sink idempotent|append``.

    For an Iceberg table (one the ``iceberg`` catalog loads) ``idempotent`` is the exactly-once
    Iceberg sink and ``append`` its plain append (``controller.jobkit.iceberg_sink``).
    ``unique_keys``: each batch holds one row per key (``--emit final``), so the Iceberg sink does
    not combine the batch's rows per key first.
    """
    if kind not in ("idempotent", "append"):
        raise SinkError(f"unknown sink kind {kind!r}: expected idempotent or append")
    from controller.jobkit import iceberg_sink  # it imports this module

    if iceberg_sink.is_iceberg_table(spark, table):
        return iceberg_sink.IcebergSink(
            spark, table, query_name, spec, version=version, checkpoint=checkpoint,
            exactly_once=kind == "idempotent", unique_keys=unique_keys,
        )
    if kind == "idempotent":
        return IdempotentPartitionSink(
            spark, table, query_name, spec, version=version, keep_versions=keep_versions,
            checkpoint=checkpoint, takeover=takeover,
        )
    if kind == "append":
        return AppendSink(spark, table, query_name, version)
    raise SinkError(f"unknown sink kind {kind!r}: expected idempotent or append")
