"""The SQL the Hive adapter writes: Hive DDL for tables (through Spark), the serving-view query
(through Presto) and the column changes an update action asks for.

Pure functions (no server); every identifier is checked and quoted, every timestamp checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from controller.adapters.hive_parse import ALL_COLUMNS_ALIAS, BACKEND
from controller.model.errors import PermanentBackendError
from controller.model.identifiers import (
    check_hive_ident,
    normalize_hive_type,
    presto_string_literal,
    quote_hive,
    quote_hive_qualified,
    quote_presto,
    spark_string_literal,
    split_qualified,
)
from controller.plan.actions import FieldChange
from controller.plan.keysplit import (
    BUCKETS,
    canary_predicate,
    listed_predicate,
    split_share,
    stable_predicate,
)
from controller.plan.resources import KeySplit, TableResource

_STORED_AS = {"parquet": "PARQUET", "orc": "ORC", "avro": "AVRO", "textfile": "TEXTFILE"}
_TIMESTAMP = re.compile(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?\Z")


def create_table_sql(desired: TableResource) -> str:
    """Hive DDL (``STORED AS``) through Spark: a table Presto can read too."""
    db, table = split_qualified(desired.name)
    fmt = desired.format.lower()
    if fmt not in _STORED_AS:
        raise PermanentBackendError(
            BACKEND,
            f"table {desired.name}: format {desired.format!r} is not supported (use {sorted(_STORED_AS)})",
        )
    cols = ", ".join(f"{quote_hive(c.name)} {normalize_hive_type(c.type)}" for c in desired.columns)
    sql = f"CREATE TABLE {quote_hive_qualified(db, table)} ({cols})"
    if desired.partition_columns:
        parts = ", ".join(
            f"{quote_hive(c.name)} {normalize_hive_type(c.type)}" for c in desired.partition_columns
        )
        sql += f" PARTITIONED BY ({parts})"
    sql += f" STORED AS {_STORED_AS[fmt]}"
    if desired.location:
        sql += f" LOCATION {spark_string_literal(desired.location)}"
    if desired.properties:
        sql += f" TBLPROPERTIES ({props_sql(desired.properties)})"
    return sql


def props_sql(props: dict[str, str]) -> str:
    """``'k'='v', …`` of ``TBLPROPERTIES (…)``, sorted by key."""
    return ", ".join(f"{spark_string_literal(k)}={spark_string_literal(v)}" for k, v in sorted(props.items()))


def view_query(
    segments: list[tuple[str, str | None]],
    cols: list[str],
    all_columns: bool,
    time_column: str,
    presto_name: Callable[[str, str], str],
    split: KeySplit | None = None,
) -> str:
    """``SELECT cols FROM t [pipectl_all] [WHERE since <= time < next since]``, UNION ALL per segment;
    ``presto_name`` quotes a (database, table) pair as Presto addresses it. With ``split`` (key-subset
    canary) the segments serve the keys outside the split's bucket range (or key list) and the split's
    segments, after them, the keys inside it (``controller.plan.keysplit``)."""
    share = split_share(split)
    if split is None or share == 0:
        return _segments_query(segments, cols, all_columns, time_column, presto_name, None)
    canary = [(s.table, s.since) for s in split.segments]
    if share == BUCKETS:
        return _segments_query(canary, cols, all_columns, time_column, presto_name, None)
    if split.keys:
        canary_only = listed_predicate(split.columns, split.keys)
        stable_only = f"NOT ({canary_only})"
    else:
        stable_only = stable_predicate(split.columns, share)
        canary_only = canary_predicate(split.columns, share)
    return " UNION ALL ".join(
        [
            _segments_query(segments, cols, all_columns, time_column, presto_name, stable_only),
            _segments_query(canary, cols, all_columns, time_column, presto_name, canary_only),
        ]
    )


def _segments_query(
    segments: list[tuple[str, str | None]],
    cols: list[str],
    all_columns: bool,
    time_column: str,
    presto_name: Callable[[str, str], str],
    keys: str | None,
) -> str:
    select = ", ".join(quote_presto(c) for c in cols)
    alias = f" {quote_presto(ALL_COLUMNS_ALIAS)}" if all_columns else ""
    tcol = quote_presto(check_hive_ident(time_column, "column"))
    parts = []
    for i, (table, since) in enumerate(segments):
        until = segments[i + 1][1] if i + 1 < len(segments) else None
        bounds = [f"{tcol} >= TIMESTAMP {presto_string_literal(check_timestamp(since))}"] if since else []
        if until:
            bounds.append(f"{tcol} < TIMESTAMP {presto_string_literal(check_timestamp(until))}")
        if keys:
            bounds.append(keys)
        where = f" WHERE {' AND '.join(bounds)}" if bounds else ""
        # every identifier is checked and quoted (quote_presto), timestamps checked (check_timestamp),
        # the key predicate built from quoted identifiers, an integer or string literals (plan.keysplit)
        parts.append(f"SELECT {select} FROM {presto_name(*split_qualified(table))}{alias}{where}")  # noqa: S608
    return " UNION ALL ".join(parts)


def check_timestamp(value: str) -> str:
    """``value`` if it reads as ``YYYY-MM-DD HH:MM:SS[.ffffff]``, else a PermanentBackendError."""
    if not _TIMESTAMP.fullmatch(value):
        raise PermanentBackendError(BACKEND, f"segment start {value!r} is not 'YYYY-MM-DD HH:MM:SS'")
    return value


def is_add_column(ch: FieldChange) -> bool:
    """Whether a planned change adds a column (``columns.<name>``: None → a type)."""
    return (
        re.fullmatch(r"columns\.[a-z_][a-z0-9_]*", ch.field) is not None
        and ch.old is None
        and ch.new is not None
    )


def column_change(ch: FieldChange) -> tuple[str, str]:
    """(checked column name, normalized type) of an added column."""
    return check_hive_ident(ch.field.removeprefix("columns."), "column"), normalize_hive_type(str(ch.new))


def columns_to_add(
    table: str, changes: Sequence[FieldChange], have: Mapping[str, str]
) -> list[tuple[str, str]]:
    """(name, normalized type) of the planned added columns live state does not have yet; a column
    that exists with another type means live state changed since the plan: refused."""
    add = [column_change(ch) for ch in changes if is_add_column(ch)]
    conflict = [(n, t) for n, t in add if n in have and normalize_hive_type(have[n]) != t]
    if conflict:
        raise PermanentBackendError(
            BACKEND, f"table {table}: columns exist with other types: {conflict} (live changed since plan)"
        )
    return [(n, t) for n, t in add if n not in have]
