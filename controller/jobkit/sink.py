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
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

log = logging.getLogger("pipectl.jobkit.sink")

HIVE_IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]{0,127}$")
# Query names end up in directory and file names, never in SQL.
QUERY_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# Partition values are embedded as SQL string literals and path segments.
PARTITION_VALUE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:+-]{0,127}$")
VERSION_DIR_RE = re.compile(r"^_v=(\d+)-(.+)$")
MARKER_DIR = "_pipectl_sink"
WRITER_FILE = "_writer.json"


class SinkError(RuntimeError):
    """The sink refused to write (bad identifier, schema mismatch, unsafe location)."""


def check_ident(name: str, what: str = "identifier") -> str:
    """Return ``name`` if it matches ``[a-z_][a-z0-9_]*``, else raise :class:`SinkError`."""
    if not HIVE_IDENT_RE.match(name):
        raise SinkError(f"invalid {what} {name!r}: must match [a-z_][a-z0-9_]*")
    return name


def quote_ident(name: str) -> str:
    """Backtick-quote one checked identifier for Spark SQL."""
    return f"`{check_ident(name)}`"


def split_table(name: str) -> tuple[str, str]:
    """Split and check ``db.table``."""
    parts = name.split(".")
    if len(parts) != 2:
        raise SinkError(f"invalid table name {name!r}: expected <database>.<table>")
    return check_ident(parts[0], "database"), check_ident(parts[1], "table")


def check_query_name(name: str) -> str:
    if not QUERY_NAME_RE.match(name):
        raise SinkError(f"invalid query name {name!r}: must match [A-Za-z0-9_][A-Za-z0-9_.-]*")
    return name


def check_partition_value(value: object) -> str:
    if not isinstance(value, str) or not PARTITION_VALUE_RE.match(value):
        raise SinkError(f"refusing partition value {value!r}: must match {PARTITION_VALUE_RE.pattern}")
    return value


def sql_string(value: str) -> str:
    """Single-quote a value that has no quote, backslash or control character."""
    if any(c in value for c in "'\\") or any(ord(c) < 32 for c in value):
        raise SinkError(f"refusing to put {value!r} into a SQL string literal")
    return f"'{value}'"


# --- merge math -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MergeSpec:
    """How rows with the same key combine.

    ``count`` is the weight column (e.g. ``samples``): it is summed. Columns in ``weighted_mean``
    are averaged weighted by ``count``; ``maximum``/``minimum``/``total`` use max/min/sum.
    Every non-key column of the table must be covered by exactly one rule.
    """

    keys: tuple[str, ...]
    count: str
    weighted_mean: tuple[str, ...] = ()
    maximum: tuple[str, ...] = ()
    minimum: tuple[str, ...] = ()
    total: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = self.all_columns
        for n in names:
            check_ident(n, "column")
        if len(set(names)) != len(names):
            raise SinkError(f"merge spec names a column twice: {names}")
        if not self.keys:
            raise SinkError("merge spec needs at least one key column")

    @property
    def value_columns(self) -> tuple[str, ...]:
        return (self.count, *self.weighted_mean, *self.maximum, *self.minimum, *self.total)

    @property
    def all_columns(self) -> tuple[str, ...]:
        return (*self.keys, *self.value_columns)


def merge_rows(
    rows: Iterable[Mapping[str, Any]], spec: MergeSpec, partition_column: str | None = None
) -> list[dict[str, Any]]:
    """Pure-Python reference of :func:`merge_frames`: combine rows per key, sorted by key.

    Null values are ignored by each rule; a weighted mean is weighted only by the counts of rows
    that carry a value. Rows whose count is null or <= 0 contribute nothing.
    """
    group_cols = (*spec.keys, partition_column) if partition_column else spec.keys
    acc: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        n = row[spec.count]
        if n is None or n <= 0:
            continue
        key = tuple(row[k] for k in group_cols)
        a = acc.get(key)
        if a is None:
            a = {"n": 0, "wsum": {}, "wcnt": {}, "max": {}, "min": {}, "tot": {}}
            acc[key] = a
        a["n"] += n
        for c in spec.weighted_mean:
            if row[c] is not None:
                a["wsum"][c] = a["wsum"].get(c, 0.0) + row[c] * n
                a["wcnt"][c] = a["wcnt"].get(c, 0) + n
        for c in spec.maximum:
            if row[c] is not None:
                a["max"][c] = row[c] if c not in a["max"] else max(a["max"][c], row[c])
        for c in spec.minimum:
            if row[c] is not None:
                a["min"][c] = row[c] if c not in a["min"] else min(a["min"][c], row[c])
        for c in spec.total:
            if row[c] is not None:
                a["tot"][c] = a["tot"].get(c, 0) + row[c]
    out: list[dict[str, Any]] = []
    for key in sorted(acc, key=_sort_key):
        a = acc[key]
        rec: dict[str, Any] = dict(zip(group_cols, key, strict=True))
        rec[spec.count] = a["n"]
        for c in spec.weighted_mean:
            rec[c] = a["wsum"][c] / a["wcnt"][c] if c in a["wcnt"] else None
        for c in spec.maximum:
            rec[c] = a["max"].get(c)
        for c in spec.minimum:
            rec[c] = a["min"].get(c)
        for c in spec.total:
            rec[c] = a["tot"].get(c)
        out.append(rec)
    return out


def _sort_key(key: tuple[Any, ...]) -> tuple[tuple[bool, Any], ...]:
    return tuple((v is None, v) for v in key)


def merge_frames(
    frames: Sequence[DataFrame], spec: MergeSpec, partition_column: str | None = None
) -> DataFrame:
    """Combine partial-aggregate frames per key with the rules of ``spec`` (see :func:`merge_rows`)."""
    if not frames:
        raise SinkError("merge_frames needs at least one frame")
    group_cols = [*spec.keys, partition_column] if partition_column else list(spec.keys)
    cols = [*group_cols, *spec.value_columns]
    union = reduce(DataFrame.unionByName, [f.select(*cols) for f in frames])
    union = union.where(F.col(spec.count) > 0)
    n = F.col(spec.count)
    aggs: list[Column] = [F.sum(n).cast("bigint").alias(spec.count)]
    for c in spec.weighted_mean:
        weight = F.when(F.col(c).isNotNull(), n.cast("double"))
        aggs.append((F.sum(F.col(c) * n.cast("double")) / F.sum(weight)).alias(c))
    aggs += [F.max(c).alias(c) for c in spec.maximum]
    aggs += [F.min(c).alias(c) for c in spec.minimum]
    aggs += [F.sum(c).alias(c) for c in spec.total]
    return union.groupBy(*group_cols).agg(*aggs)


# --- Hadoop filesystem helpers (via the JVM, so HDFS/S3/file all work) ----------------------


class _Fs:
    def __init__(self, spark: SparkSession) -> None:
        self._jvm = spark.sparkContext._jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()
        assert self._jvm is not None

    def path(self, location: str, *children: str) -> Any:
        p = self._jvm.org.apache.hadoop.fs.Path(location)  # type: ignore[union-attr]
        for c in children:
            p = self._jvm.org.apache.hadoop.fs.Path(p, c)  # type: ignore[union-attr]
        return p

    def fs(self, p: Any) -> Any:
        return p.getFileSystem(self._conf)

    def exists(self, p: Any) -> bool:
        return bool(self.fs(p).exists(p))

    def list_dirs(self, p: Any) -> list[str]:
        fs = self.fs(p)
        if not fs.exists(p):
            return []
        return [s.getPath().getName() for s in fs.listStatus(p) if s.isDirectory()]

    def list_dirs_mtime(self, p: Any) -> list[tuple[str, int]]:
        fs = self.fs(p)
        if not fs.exists(p):
            return []
        return [
            (s.getPath().getName(), int(s.getModificationTime())) for s in fs.listStatus(p) if s.isDirectory()
        ]

    def list_names(self, p: Any) -> list[str]:
        fs = self.fs(p)
        if not fs.exists(p):
            return []
        return [s.getPath().getName() for s in fs.listStatus(p)]

    def delete(self, p: Any) -> None:
        self.fs(p).delete(p, True)

    def read_text(self, p: Any) -> str | None:
        fs = self.fs(p)
        if not fs.exists(p):
            return None
        stream = fs.open(p)
        try:
            return str(self._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))  # type: ignore[union-attr]
        finally:
            stream.close()

    def write_text_atomic(self, p: Any, text: str) -> None:
        fs = self.fs(p)
        tmp = self._jvm.org.apache.hadoop.fs.Path(p.getParent(), f".{p.getName()}.tmp")  # type: ignore[union-attr]
        out = fs.create(tmp, True)
        try:
            out.write(bytearray(text.encode("utf-8")))
        finally:
            out.close()
        if fs.exists(p):
            fs.delete(p, False)
        if not fs.rename(tmp, p):
            raise SinkError(f"could not rename {tmp} to {p}")


def batch_watermark_ms(spark: SparkSession, checkpoint: str, batch_id: int) -> int | None:
    """The event-time watermark Spark recorded for ``batch_id`` in its offset log.

    Spark writes ``<checkpoint>/offsets/<batchId>`` before running the batch and re-uses it on
    replay, so filtering late rows with this value is deterministic. ``None`` when unknown.
    """
    fs = _Fs(spark)
    text = fs.read_text(fs.path(checkpoint, "offsets", str(int(batch_id))))
    if not text:
        return None
    lines = text.splitlines()
    if len(lines) < 2:
        return None
    try:
        meta = json.loads(lines[1])
        return int(meta.get("batchWatermarkMs", 0))
    except (ValueError, TypeError, AttributeError):
        return None


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
        self.fs = _Fs(spark)
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
            if VERSION_DIR_RE.match(name) and name != current
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
) -> _TableSink:
    """Build the sink a job asked for with ``--sink idempotent|append``."""
    if kind == "idempotent":
        return IdempotentPartitionSink(
            spark, table, query_name, spec, version=version, keep_versions=keep_versions,
            checkpoint=checkpoint, takeover=takeover,
        )
    if kind == "append":
        return AppendSink(spark, table, query_name, version)
    raise SinkError(f"unknown sink kind {kind!r}: expected idempotent or append")
