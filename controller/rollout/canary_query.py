"""What the canary comparison reads from a table: its columns (declared or inferred) and the SQL.

``resolve_columns`` turns a gate's ``CanaryAnalysis`` and the live columns of the canary's and the
baseline's tables (``information_schema.columns``, read through ``live_columns_sql``) into
``CanaryColumns``:

- Declared keys, window and metrics are used as written; each must be a live column of both tables.
- A gate that declares none of them, on a table with the columns of pipectl's example aggregate
  (``host``, ``metric``, ``window_start``, ``samples``, ``avg_value``), gets ``DEFAULT_PROFILE``:
  keys host/metric, 1-minute windows, samples' relativeTotal within the gate's tolerance and the
  samples-weighted avg_value's Mann-Whitney U at its alpha (the comparison before templates).
- Otherwise what is not declared is inferred from the columns both tables have with the same type
  (partition columns left out): the one timestamp column → window (1m), string columns → keys,
  numeric columns → metrics, each ``relativeTotal`` within the gate's tolerance.

The SQL is built with sqlglot (Presto dialect) from checked, quoted identifiers and literals.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlglot
from sqlglot import exp

from controller.model import identifiers as ids
from controller.model.analysis import CanaryAnalysis, CanaryMetric, Statistic
from controller.plan import keysplit
from controller.rollout.context import as_utc
from controller.rollout.sqlrewrite import DIALECT, SqlRefused, relation_parts, table_node

DEFAULT_WINDOW = timedelta(minutes=1)
LOOKBACK = timedelta(hours=6)
"""How far back per-window totals are read: at most this much history is compared."""

PROFILE_COLUMNS = ("host", "metric", "window_start", "samples", "avg_value")


class ColumnsError(ValueError):
    """The tables do not have what the comparison needs (the message says what)."""


@dataclass(frozen=True)
class LiveColumn:
    name: str
    type: str
    partition: bool = False

    @property
    def kind(self) -> str:
        """string, timestamp, number or other."""
        t = self.type.lower()
        if re.match(r"(varchar|char|string)\b", t):
            return "string"
        if t.startswith("timestamp"):
            return "timestamp"
        if re.match(r"(tinyint|smallint|integer|int|bigint|real|double|float|decimal)\b", t):
            return "number"
        return "other"


@dataclass(frozen=True)
class CanaryColumns:
    """The columns and windowing one table's comparison reads; ``origin`` says per part whether it
    was declared, inferred or the default profile (it goes into the evidence)."""

    keys: tuple[str, ...]
    window_column: str
    window: timedelta
    metrics: tuple[CanaryMetric, ...]
    origin: Mapping[str, str]

    @property
    def total_columns(self) -> tuple[str, ...]:
        """Columns whose per-window sums relativeTotal compares."""
        seen = [m.column for m in self.metrics if m.statistic is Statistic.RELATIVE_TOTAL]
        return tuple(dict.fromkeys(seen))

    @property
    def value_columns(self) -> tuple[tuple[str, str | None], ...]:
        """(column, weight) pairs whose per-(keys, window) means the distribution statistics compare."""
        return tuple(dict.fromkeys((m.column, m.weight) for m in self.metrics))


DEFAULT_PROFILE = (
    ("host", "metric"),
    "window_start",
    (
        CanaryMetric(column="samples", statistic=Statistic.RELATIVE_TOTAL, min_samples=1),
        CanaryMetric(column="avg_value", statistic=Statistic.MANN_WHITNEY_U, weight="samples"),
    ),
)


def needs_live_columns(analysis: CanaryAnalysis) -> bool:
    """Whether ``resolve_columns`` needs the tables' live columns (something is not declared)."""
    return analysis.keys is None or analysis.window is None or analysis.metrics is None


def resolve_columns(
    analysis: CanaryAnalysis, canary: list[LiveColumn] | None, baseline: list[LiveColumn] | None
) -> CanaryColumns:
    """The comparison's columns for one table pair; ``ColumnsError`` when they cannot be had.

    ``canary``/``baseline`` are the live columns (None: not read, everything is declared).
    """
    common: dict[str, LiveColumn] | None = None
    if canary is not None and baseline is not None:
        b = {c.name.lower(): c for c in baseline}
        common = {
            c.name.lower(): c for c in canary if c.name.lower() in b and b[c.name.lower()].kind == c.kind
        }
    if not analysis.declared and common is not None and all(c in common for c in PROFILE_COLUMNS):
        keys, window_column, metrics = DEFAULT_PROFILE
        origin = dict.fromkeys(("keys", "window", "metrics"), "default profile")
        cols = CanaryColumns(keys, window_column, DEFAULT_WINDOW, metrics, origin)
    else:
        cols = _infer(analysis, common)
    _check_present(cols, canary, baseline)
    return cols


def _infer(analysis: CanaryAnalysis, common: dict[str, LiveColumn] | None) -> CanaryColumns:
    origin: dict[str, str] = {}
    usable = {n: c for n, c in (common or {}).items() if not c.partition}
    if analysis.window is not None:
        window_column, window = analysis.window.column, timedelta(seconds=analysis.window.seconds)
        origin["window"] = "declared"
    else:
        stamps = sorted(n for n, c in usable.items() if c.kind == "timestamp")
        if len(stamps) != 1:
            found = f"found {', '.join(stamps)}" if stamps else "found none"
            raise ColumnsError(
                f"cannot infer the window column: expected one timestamp column in both tables, {found}; "
                "declare window.column"
            )
        window_column, window = stamps[0], DEFAULT_WINDOW
        origin["window"] = "inferred"
    if analysis.keys is not None:
        keys = tuple(analysis.keys)
        origin["keys"] = "declared"
    else:
        keys = tuple(n for n, c in usable.items() if c.kind == "string" and n != window_column)
        origin["keys"] = "inferred"
    if analysis.metrics is not None:
        metrics = tuple(analysis.metrics)
        origin["metrics"] = "declared"
    else:
        taken = {*keys, window_column}
        metrics = tuple(
            CanaryMetric(column=n) for n, c in usable.items() if c.kind == "number" and n not in taken
        )
        if not metrics:
            raise ColumnsError("cannot infer metrics: no numeric column in both tables; declare metrics")
        origin["metrics"] = "inferred"
    return CanaryColumns(keys, window_column, window, metrics, origin)


def _check_present(
    cols: CanaryColumns, canary: list[LiveColumn] | None, baseline: list[LiveColumn] | None
) -> None:
    needed = [*cols.keys, cols.window_column, *(m.column for m in cols.metrics)]
    needed += [m.weight for m in cols.metrics if m.weight]
    for label, live in (("canary", canary), ("baseline", baseline)):
        if live is None:
            continue
        have = {c.name.lower() for c in live}
        missing = [c for c in dict.fromkeys(needed) if c.lower() not in have]
        if missing:
            raise ColumnsError(f"the {label}'s table lacks column(s) {', '.join(missing)}")


# --- SQL ------------------------------------------------------------------------------------


def _col(name: str) -> exp.Column:
    try:
        ids.check_hive_ident(name, "column")
    except ids.IdentifierError as e:
        raise SqlRefused(f"invalid column name in the canary comparison settings: {e}") from None
    return exp.column(name, quoted=True)


def timestamp_literal(t: datetime) -> exp.Expression:
    """A Presto timestamp of a datetime, in UTC (millisecond precision)."""
    naive = as_utc(t).replace(tzinfo=None)
    text = naive.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return exp.cast(exp.Literal.string(text), exp.DataType.build("timestamp"))


def live_columns_sql(table: str) -> str:
    """The table's columns, types and partition flags from Presto's information_schema (the
    table's catalog's, for a ``catalog.db.table``)."""
    catalog, db, name = relation_parts(table)
    where = exp.and_(
        exp.EQ(this=exp.column("table_schema"), expression=exp.Literal.string(db.lower())),
        exp.EQ(this=exp.column("table_name"), expression=exp.Literal.string(name.lower())),
    )
    schema = exp.Table(
        this=exp.to_identifier("columns"),
        db=exp.to_identifier("information_schema"),
        catalog=exp.to_identifier(catalog, quoted=True) if catalog else None,
    )
    q = exp.select("column_name", "data_type", "extra_info").from_(schema)
    return q.where(where).order_by("ordinal_position").sql(dialect=DIALECT)


def parse_live_columns(rows: list[tuple[Any, ...]]) -> list[LiveColumn]:
    return [
        LiveColumn(str(r[0]), str(r[1]), "partition" in str(r[2] or "").lower())
        for r in rows
        if r[0] is not None
    ]


KeyFilter = keysplit.KeyFilter | None
"""A key-subset canary's step: (key columns, percent or listed keys); only the keys it serves are
read (``plan.keysplit.served_predicate``)."""


def _key_condition(keys: KeyFilter) -> list[exp.Expression]:
    if keys is None:
        return []
    for c in keys[0]:
        _col(c)  # checked like every other column of the comparison
    cond = sqlglot.parse_one(keysplit.served_predicate(keys), read=DIALECT)
    assert isinstance(cond, exp.Expression)
    return [cond]


def per_window_sql(table: str, cols: CanaryColumns, since: datetime, keys: KeyFilter = None) -> str:
    """Per window start from ``since`` on: row count, then the sum of each total column (of the
    canary's keys only, with ``keys``)."""
    w = _col(cols.window_column)
    sums = [exp.func("sum", _col(c)) for c in cols.total_columns]
    q = exp.select(w, exp.func("count", exp.Star()), *sums).from_(table_node(table))
    where = exp.and_(exp.GTE(this=w.copy(), expression=timestamp_literal(since)), *_key_condition(keys))
    return q.where(where).group_by(w.copy()).sql(dialect=DIALECT)


def per_key_sql(
    table: str, cols: CanaryColumns, first: datetime, last: datetime, key_filter: KeyFilter = None
) -> str:
    """Per (keys…, window start) from ``first`` to ``last``: the (weighted) mean of each value column."""
    w = _col(cols.window_column)
    keys = [_col(k) for k in cols.keys]
    means: list[exp.Expression] = []
    for column, weight in cols.value_columns:
        if weight is None:
            means.append(exp.Avg(this=_col(column)))
        else:
            num = exp.func("sum", exp.Mul(this=_col(column), expression=_col(weight)))
            den = exp.func("nullif", exp.func("sum", _col(weight)), exp.Literal.number(0))
            means.append(exp.Div(this=num, expression=den))
    span = exp.and_(
        exp.GTE(this=w.copy(), expression=timestamp_literal(first)),
        exp.LTE(this=w.copy(), expression=timestamp_literal(last)),
        *_key_condition(key_filter),
    )
    q = exp.select(*keys, w, *means).from_(table_node(table)).where(span)
    return q.group_by(*[k.copy() for k in keys], w.copy()).sql(dialect=DIALECT)
