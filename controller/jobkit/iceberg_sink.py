"""Exactly-once micro-batch commits into an Iceberg table, without rewriting partitions.

Each micro-batch of partial aggregates becomes one Iceberg commit whose snapshot summary holds
``pipectl.query-id`` (the checkpoint's query id) and ``pipectl.batch-id``, like Iceberg's own
streaming sink records ``spark.sql.streaming.queryId`` and ``spark.sql.streaming.epochId``, and
``pipectl.end-offsets``: the batch's end offsets from the checkpoint's offset log (Spark's
``startingOffsets`` JSON), so a query started from them on a table rolled back to this snapshot
reads exactly the events the table does not hold (``controller.rollout.table_rollback``).
Before writing, the sink reads the table's snapshot summaries once per process: a batch whose id
is at most the highest one committed under this query id was committed before a crash (Spark
replays it because its own commit log missed it) and is skipped. Batch ids grow per checkpoint
and a table has one writer, so "at most the highest" is exact.

The commit is

- a plain append (``writeTo(...).append()`` with ``snapshot-property.*`` options) when the batch's
  keys (``MergeSpec.keys``) cannot be in the table yet: for some ordered key (a time, a date, a
  number) the batch's range lies outside the range the table holds. The sink reads the table's
  key ranges once per process (one ``min``/``max`` query, which Iceberg answers from its file
  stats) and widens them with each batch it commits, so the decision costs no Spark job;
- else one ``MERGE INTO`` keyed by the merge spec's keys: matched rows combine by the spec's
  rules (counts add, means weighted by the count, max/min/sum), new keys are inserted. MERGE
  needs Iceberg's SQL extensions on the session (``kafka_job`` sets ``spark.sql.extensions``);
  the snapshot properties go through Iceberg's ``CommitMetadata`` thread-local, which its
  row-level writes add to the snapshot summary (SQL MERGE takes no write options).

Only the data files of the batch (and, for MERGE, those holding the matched rows, or delete files
with ``write.merge.mode=merge-on-read``) are written: the cost follows the batch, not the table.
One writer per table: this stack's Iceberg commits are lock-free (``docs/iceberg.md``).

Imports only pyspark and the standard library: it ships with the job.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from controller.jobkit.checks import SinkError, check_query_name, quote_ident, split_table, sql_string
from controller.jobkit.hadoop_fs import HadoopFs, batch_end_offsets
from controller.jobkit.merge import MergeSpec, merge_frames
from controller.jobkit.sink import BatchResult

log = logging.getLogger("pipectl.jobkit.iceberg_sink")

ICEBERG_CATALOG = "iceberg"
QUERY_ID_KEY = "pipectl.query-id"
BATCH_ID_KEY = "pipectl.batch-id"
QUERY_KEY = "pipectl.query"
VERSION_KEY = "pipectl.version"
END_OFFSETS_KEY = "pipectl.end-offsets"
EXTENSIONS = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"


# --- pure parts (unit-tested without Spark) ---------------------------------------------------


def last_committed_batch(summaries: Iterable[Mapping[str, str] | None], query_id: str) -> int | None:
    """The highest ``pipectl.batch-id`` among snapshot summaries written under ``query_id``."""
    ids = [
        int(s[BATCH_ID_KEY])
        for s in summaries
        if s and s.get(QUERY_ID_KEY) == query_id and str(s.get(BATCH_ID_KEY, "")).isdigit()
    ]
    return max(ids) if ids else None


def snapshot_properties(
    query: str, query_id: str, batch_id: int, version: str, end_offsets: str | None = None
) -> dict[str, str]:
    """The snapshot summary of one batch's commit; ``end_offsets`` only when the offset log gave them."""
    props = {QUERY_KEY: query, QUERY_ID_KEY: query_id, BATCH_ID_KEY: str(int(batch_id)), VERSION_KEY: version}
    if end_offsets:
        props[END_OFFSETS_KEY] = end_offsets
    return props


def merge_value_exprs(spec: MergeSpec, target: str = "t", source: str = "s") -> list[tuple[str, str]]:
    """(column, SQL expression) combining a matched row with the batch's row by ``spec``'s rules.

    In ``UPDATE SET`` every expression reads the row's values from before the update (SQL
    semantics), so the weighted means use the old count. Nulls are ignored as in ``merge_rows``.
    """

    def col(alias: str, name: str) -> str:
        return f"{alias}.{quote_ident(name)}"

    n_t, n_s = col(target, spec.count), col(source, spec.count)
    out = [(spec.count, f"{n_t} + {n_s}")]
    for c in spec.weighted_mean:
        t, s = col(target, c), col(source, c)
        # A NULL mean carries no weight.
        wt = f"CASE WHEN {t} IS NULL THEN 0 ELSE {n_t} END"
        ws = f"CASE WHEN {s} IS NULL THEN 0 ELSE {n_s} END"
        out.append((c, f"CASE WHEN {t} IS NULL THEN {s} WHEN {s} IS NULL THEN {t} "
                       f"ELSE ({t} * ({wt}) + {s} * ({ws})) / (({wt}) + ({ws})) END"))
    out += [(c, f"greatest({col(target, c)}, {col(source, c)})") for c in spec.maximum]
    out += [(c, f"least({col(target, c)}, {col(source, c)})") for c in spec.minimum]
    for c in spec.total:
        t, s = col(target, c), col(source, c)
        out.append((c, f"CASE WHEN {t} IS NULL THEN {s} WHEN {s} IS NULL THEN {t} ELSE {t} + {s} END"))
    return out


def merge_set_clause(spec: MergeSpec, target: str = "t", source: str = "s") -> str:
    return ", ".join(f"{quote_ident(c)} = {e}" for c, e in merge_value_exprs(spec, target, source))


KeyRanges = dict[str, tuple[Any, Any]]


def ordered(value: Any) -> bool:
    """Whether a key value orders the rows in time or number (strings and booleans do not)."""
    return isinstance(value, int | float | dt.date) and not isinstance(value, bool)


def disjoint(bounds: Mapping[str, tuple[Any, Any]], table: Mapping[str, tuple[Any, Any]] | None) -> bool:
    """Whether no key of a batch with these (min, max) ``bounds`` per key can be a row of a table
    with the ``table`` ranges: true when the table holds no value of some key (a null key never
    matches), or when some ordered key's ranges do not meet. A key missing from ``table`` has an
    unknown range and decides nothing; ``table`` None is a table not read yet (nothing known)."""
    if table is None:
        return False
    for k, (lo, hi) in bounds.items():
        if k not in table:
            continue
        t_lo, t_hi = table[k]
        if t_lo is None and t_hi is None:
            return True
        if ordered(lo) and ordered(hi) and ordered(t_lo) and ordered(t_hi) and (lo > t_hi or hi < t_lo):
            return True
    return False


def widen(table: Mapping[str, tuple[Any, Any]], bounds: Mapping[str, tuple[Any, Any]]) -> KeyRanges:
    """The table's key ranges after committing a batch with ``bounds``. A range that cannot take
    the batch's values (naive vs aware times) becomes unknown (dropped): the sink then MERGEs."""
    out: KeyRanges = dict(table)
    for k, (lo, hi) in bounds.items():
        if k not in out:
            continue
        t_lo, t_hi = out[k]
        try:
            out[k] = (_pick(min, t_lo, lo), _pick(max, t_hi, hi))
        except TypeError:
            del out[k]
    return out


def _pick(f: Any, a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else f(a, b)


def sql_literal(value: Any) -> str:
    """A Spark SQL literal of a key bound (the batch's min or max of a key column)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.datetime):
        kind = "TIMESTAMP_NTZ" if value.tzinfo is None else "TIMESTAMP"
        return f"{kind} {sql_string(value.isoformat(sep=' '))}"
    if isinstance(value, dt.date):
        return f"DATE {sql_string(value.isoformat())}"
    raise SinkError(f"no SQL literal for a key bound of type {type(value).__name__}")


def merge_sql(
    table: str, view: str, spec: MergeSpec, columns: Iterable[str],
    bounds: Mapping[str, tuple[Any, Any]] | None = None,
) -> str:
    """The ``MERGE INTO`` of one batch (``view``: one row per key) into ``table``.

    ``bounds`` (key -> the batch's min and max) go into the ``ON`` condition as target-only
    predicates: Spark pushes them into the target scan, so Iceberg reads only the files whose
    column stats overlap the batch (without them MERGE scans the whole table).
    """
    conds = [f"t.{quote_ident(k)} = s.{quote_ident(k)}" for k in spec.keys]
    for k, (lo, hi) in sorted((bounds or {}).items()):
        # Strings come from the data and may hold quotes; time and number ranges are what prune.
        if lo is not None and hi is not None and not isinstance(lo, str):
            conds.append(f"t.{quote_ident(k)} BETWEEN {sql_literal(lo)} AND {sql_literal(hi)}")
    on = " AND ".join(conds)
    names = [quote_ident(c) for c in columns]
    return (
        f"MERGE INTO {table} t USING {quote_ident(view)} s ON {on} "  # noqa: S608 (quoted identifiers)
        f"WHEN MATCHED THEN UPDATE SET {merge_set_clause(spec)} "
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(names)}) VALUES ({', '.join('s.' + n for n in names)})"
    )


# --- Spark side ---------------------------------------------------------------------------------


def is_iceberg_table(spark: SparkSession, table: str) -> bool:
    """True when ``db.table`` loads from the stack's Iceberg catalog (a Hive table does not)."""
    db, name = split_table(table)
    if not spark.conf.get(f"spark.sql.catalog.{ICEBERG_CATALOG}", None):
        return False  # no such catalog in this session (e.g. a job outside the stack)
    try:
        spark.sql(f"DESCRIBE TABLE {ICEBERG_CATALOG}.{quote_ident(db)}.{quote_ident(name)}").collect()
    except AnalysisException:
        return False
    return True


class IcebergSink:
    """One Iceberg commit per micro-batch; ``exactly_once=False`` is the plain append (benchmarks)."""

    def __init__(
        self,
        spark: SparkSession,
        table: str,
        query_name: str,
        spec: MergeSpec,
        *,
        version: str = "",
        checkpoint: str | None = None,
        exactly_once: bool = True,
        unique_keys: bool = False,
    ) -> None:
        self.spark = spark
        self.unique_keys = unique_keys
        """Each batch holds one row per key already (``--emit final``): no combining first."""
        db, name = split_table(table)
        self.qualified = f"{ICEBERG_CATALOG}.{quote_ident(db)}.{quote_ident(name)}"
        self.query = check_query_name(query_name)
        self.spec = spec
        self.version = version
        self.checkpoint = checkpoint
        self._query_id: str | None = None
        self.exactly_once = exactly_once
        self._columns: list[tuple[str, str]] | None = None
        self._last: int | None = None
        self._loaded = False
        self._ranges: KeyRanges | None = None

    def columns(self) -> list[tuple[str, str]]:
        """The table's columns: every merge spec column, and any others (``carried``)."""
        if self._columns is None:
            schema = self.spark.table(self.qualified).schema
            self._columns = [(f.name, f.dataType.simpleString()) for f in schema.fields]
            missing = set(self.spec.all_columns) - {n for n, _ in self._columns}
            if missing:
                raise SinkError(
                    f"merge spec columns {sorted(missing)} are not columns of {self.qualified} "
                    f"(it has {sorted(n for n, _ in self._columns)})"
                )
        return self._columns

    @property
    def carried(self) -> list[str]:
        """Table columns the merge spec does not name (``dt`` beside ``window_start``): written as
        the job computes them, and a function of the keys (rows of one key agree on them)."""
        return [n for n, _ in self.columns() if n not in self.spec.all_columns]

    @property
    def query_id(self) -> str:
        """The checkpoint's query id (its ``metadata`` file exists once the query started)."""
        if self._query_id is None:
            text = HadoopFs(self.spark).read_text(HadoopFs(self.spark).path(self.checkpoint, "metadata")) \
                if self.checkpoint else None
            try:
                self._query_id = str(json.loads(text or "{}").get("id") or "")
            except ValueError:
                self._query_id = ""
        return self._query_id

    def last_committed(self) -> int | None:
        """Read once per process; then kept up to date by this (the only) writer."""
        if not self._loaded:
            sql = f"SELECT summary FROM {self.qualified}.snapshots"  # noqa: S608 (quoted identifiers)
            rows = self.spark.sql(sql).collect()
            self._last = last_committed_batch((r["summary"] for r in rows), self.query_id)
            self._loaded = True
        return self._last

    def __call__(self, df: DataFrame, batch_id: int) -> None:
        self.write_batch(df, batch_id)

    def write_batch(self, df: DataFrame, batch_id: int) -> BatchResult:
        t = t0 = time.monotonic()
        result = BatchResult(self.query, int(batch_id), self.version)
        cols = self.columns()
        if self.exactly_once:
            last = self.last_committed()
            t = result.lap("snapshots", t)
            if last is not None and batch_id <= last:
                result.skipped = f"batch already committed (table has batches up to {last})"
                log.info("%s batch %s: %s, skipping", self.query, batch_id, result.skipped)
                result.seconds = time.monotonic() - t0
                return result
        absent = [n for n in self.carried if n not in df.columns]
        if absent:
            raise SinkError(f"{self.qualified} has column(s) {absent} that the job's output lacks")
        out = df.select(*[F.col(n).cast(ty).alias(n) for n, ty in cols])
        if self.exactly_once and not self.unique_keys:
            # MERGE needs one source row per key; the batch's partials may repeat a key.
            out = merge_frames([out], self.spec, carried=self.carried).select(
                *[F.col(n).cast(ty).alias(n) for n, ty in cols]
            )
        out = out.localCheckpoint(eager=True)
        t = result.lap("aggregate", t)
        rows, bounds = self._key_bounds(out)
        t = result.lap("stats", t)
        if rows == 0:
            result.skipped = "empty batch"
        elif self.exactly_once and not disjoint(bounds, self.key_ranges()):
            self._merge(out, int(batch_id), bounds)
            result.lap("merge", t)
        else:
            writer = out.writeTo(self.qualified)
            if self.exactly_once:
                for k, v in self._properties(int(batch_id)).items():
                    writer = writer.option(f"snapshot-property.{k}", v)
            writer.append()
            result.lap("append", t)
        if self.exactly_once and result.skipped is None:
            self._last = int(batch_id)
            self._ranges = widen(self.key_ranges(), bounds)
        result.seconds = time.monotonic() - t0
        return result

    def _properties(self, batch_id: int) -> dict[str, str]:
        ends = batch_end_offsets(self.spark, self.checkpoint, batch_id) if self.checkpoint else None
        return snapshot_properties(self.query, self.query_id, batch_id, self.version, ends)

    def key_ranges(self) -> KeyRanges:
        """The (min, max) of each key in the table: read once per process, then widened by this
        (the only) writer's commits. Deletes (retention) only narrow the true ranges, so the kept
        ones stay a safe superset."""
        if self._ranges is None:
            _, self._ranges = self._key_bounds(self.spark.table(self.qualified))
        return self._ranges

    def _key_bounds(self, df: DataFrame) -> tuple[int, KeyRanges]:
        """``df``'s row count and each key's (min, max), in one job: for a batch they decide append
        vs MERGE and bound the MERGE's target scan; for the table they are its key ranges."""
        keys = list(self.spec.keys)
        row = df.agg(F.count(F.lit(1)), *[f(k) for k in keys for f in (F.min, F.max)]).first()
        if row is None:
            return 0, {k: (None, None) for k in keys}
        return int(row[0]), {k: (row[1 + 2 * i], row[2 + 2 * i]) for i, k in enumerate(keys)}

    def _merge(self, out: DataFrame, batch_id: int, bounds: Mapping[str, tuple[Any, Any]]) -> None:
        view = f"pipectl_batch_{self.query.replace('-', '_').replace('.', '_')}"
        session = out.sparkSession
        out.createOrReplaceTempView(view)
        props = self._properties(batch_id)
        with _commit_properties(session, props):
            session.sql(merge_sql(self.qualified, view, self.spec, [n for n, _ in self.columns()], bounds))
        session.catalog.dropTempView(view)


class _commit_properties:
    """Set Iceberg's ``CommitMetadata`` thread-local for the statement run inside the block.

    PySpark pins each Python thread to one JVM thread, and a SQL command commits on the thread
    that runs it, so the properties reach exactly this MERGE's snapshot.
    """

    def __init__(self, spark: SparkSession, props: Mapping[str, str]) -> None:
        jvm: Any = spark.sparkContext._jvm
        cls = jvm.java.lang.Class.forName("org.apache.iceberg.spark.CommitMetadata")
        field = cls.getDeclaredField("COMMIT_PROPERTIES")
        field.setAccessible(True)
        self._local = field.get(None)
        self._map = jvm.java.util.HashMap()
        for k, v in props.items():
            self._map.put(k, v)

    def __enter__(self) -> None:
        self._local.set(self._map)

    def __exit__(self, *exc: object) -> None:
        self._local.remove()
