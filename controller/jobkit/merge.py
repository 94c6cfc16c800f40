"""The merge math of the jobkit sink: how partial aggregates with the same key combine
(:class:`MergeSpec`), in pure Python (:func:`merge_rows`, the reference) and in Spark
(:func:`merge_frames`).

Imports only pyspark and the standard library: it ships with the job, not the controller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from controller.jobkit.checks import SinkError, check_ident


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
    frames: Sequence[DataFrame],
    spec: MergeSpec,
    partition_column: str | None = None,
    carried: Sequence[str] = (),
) -> DataFrame:
    """Combine partial-aggregate frames per key with the rules of ``spec`` (see :func:`merge_rows`).

    ``partition_column`` and ``carried`` columns are functions of the keys (``dt`` of
    ``window_start``): they are kept as they are, so grouping by them too changes nothing."""
    if not frames:
        raise SinkError("merge_frames needs at least one frame")
    group_cols = [*spec.keys, *([partition_column] if partition_column else []), *carried]
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
