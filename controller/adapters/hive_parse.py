"""Reading what the Hive side reports: Spark's ``SHOW TABLE EXTENDED`` text, its table property
lists, GetColumns type names and the view SQL Presto stores in the metastore.

Pure functions (no server), used by ``controller.adapters.hive`` to build the observed resources.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp

from controller.model.identifiers import normalize_hive_type
from controller.plan.keysplit import bucket_sql, key_sql
from controller.plan.resources import Column, KeySplit, Owner, TableResource, ViewSegment
from controller.plan.rules.hive import OWNER_PROPERTY, VERSION_PROPERTY

BACKEND = "hive"
ALL_COLUMNS_ALIAS = "pipectl_all"

_SERDE_FORMATS = (
    ("parquet", "parquet"),
    ("orc", "orc"),
    ("avro", "avro"),
    ("jsonserde", "json"),
    ("opencsvserde", "csv"),
    ("lazysimpleserde", "textfile"),
)


@dataclass
class TableInfo:
    """What ``SHOW TABLE EXTENDED`` says about one table (its ``information`` column)."""

    type: str = ""
    provider: str = ""
    location: str | None = None
    serde: str = ""
    input_format: str = ""
    partition_columns: list[str] = field(default_factory=list)
    properties: dict[str, str] | None = field(default_factory=dict)
    view_text: str | None = None

    @property
    def format(self) -> str:
        if self.provider and self.provider.lower() != "hive":
            return f"spark:{self.provider.lower()}"
        for key in (self.serde.lower(), self.input_format.lower()):
            for marker, fmt in _SERDE_FORMATS:
                if marker in key:
                    return fmt
        return self.serde.rsplit(".", 1)[-1].lower() or "unknown"


_INFO_LINE = re.compile(r"^([A-Z][A-Za-z ]*): ?", re.M)
_PROP_KEY = re.compile(r"\A[A-Za-z0-9_.:/\-]+\Z")
_BACKTICKED = re.compile(r"`((?:[^`]|``)*)`")


def parse_table_info(text: str) -> TableInfo:
    """Parse Spark 3.5's ``SHOW TABLE EXTENDED`` information text."""
    entries: dict[str, str] = {}
    matches = list(_INFO_LINE.finditer(text))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        entries.setdefault(m.group(1), text[m.end() : end].rstrip("\n"))
    parts = entries.get("Partition Columns", "")
    return TableInfo(
        type=entries.get("Type", "").strip().upper(),
        provider=entries.get("Provider", "").strip(),
        location=entries.get("Location", "").strip() or None,
        serde=entries.get("Serde Library", "").strip(),
        input_format=entries.get("InputFormat", "").strip(),
        partition_columns=[p.replace("``", "`") for p in _BACKTICKED.findall(parts)],
        properties=parse_properties(entries.get("Table Properties", "[]").strip()),
        view_text=entries.get("View Original Text"),
    )


def parse_properties(text: str) -> dict[str, str] | None:
    """Parse ``[k1=v1, k2=v2]`` (Spark sorts it by key); None when it cannot be read for sure.

    A piece that does not start with a key sorting after the previous one belongs to the previous
    value (which contained ", "). Such a value makes the whole list uncertain, so the caller reads
    the properties exactly instead.
    """
    if not (text.startswith("[") and text.endswith("]")):
        return None
    body = text[1:-1]
    if not body:
        return {}
    props: list[list[str]] = []
    for piece in body.split(", "):
        key, sep, value = piece.partition("=")
        if sep and _PROP_KEY.fullmatch(key) and (not props or key > props[-1][0]):
            props.append([key, value])
        else:
            return None
    return {k: v for k, v in props}


def table_resource(
    db: str, name: str, info: TableInfo, props: dict[str, str], columns: list[Column]
) -> TableResource:
    """The observed table: ``SHOW TABLE EXTENDED`` facts, its properties and its columns."""
    parts = set(info.partition_columns)
    owner = None
    if OWNER_PROPERTY in props:
        owner = Owner(release=props[OWNER_PROPERTY], version=props.get(VERSION_PROPERTY, ""))
    return TableResource(
        name=f"{db}.{name}",
        owner=owner,
        columns=[c for c in columns if c.name not in parts],
        partition_columns=[c for c in columns if c.name in parts],
        format=info.format,
        properties=props,
        location=info.location,
    )


@dataclass(frozen=True)
class ParsedView:
    """A view pipectl wrote, read back: its segments, columns and time column."""

    segments: list[tuple[str, str | None]]
    columns: list[str]
    all_columns: bool
    time_column: str | None = None
    split: KeySplit | None = None
    """Key-subset canary: the keys below ``split.percent`` come from ``split.segments``."""


_PRESTO_VIEW = re.compile(r"/\* Presto View: ([A-Za-z0-9+/=]+) \*/")


@functools.lru_cache(maxsize=8192)
def parse_presto_view(view_text: str) -> ParsedView | None:
    """Decode the view text Presto stores in the metastore (``/* Presto View: <base64 JSON> */``).
    Cached by text: a pass reads every view again, and parsing its SQL is most of the Hive read's
    own CPU (the result is frozen and never changed by its readers)."""
    m = _PRESTO_VIEW.search(view_text)
    if not m:
        return None
    try:
        definition = json.loads(base64.b64decode(m.group(1)))
        return parse_view_sql(
            str(definition["originalSql"]), default_schema=str(definition.get("schema", ""))
        )
    except (ValueError, KeyError, TypeError):
        return None


def parse_view_sql(sql: str, default_schema: str = "") -> ParsedView | None:
    """Read back a view pipectl creates (see ``hive_ddl.view_query``); anything else → None."""
    try:
        tree = sqlglot.parse_one(sql, read="presto")
    except sqlglot.errors.SqlglotError:
        return None
    selects: list[Any] = []
    while isinstance(tree, exp.Union):
        if tree.args.get("distinct"):
            return None
        selects.insert(0, tree.expression)
        tree = tree.this
    selects.insert(0, tree)
    parts = [_parse_select(s, default_schema) for s in selects]
    if any(p is None for p in parts):
        return None
    ok = [p for p in parts if p is not None]
    cols, alias = ok[0][1], ok[0][2]
    time_columns = {p[3] for p in ok if p[3]}
    if any(p[1] != cols or p[2] != alias for p in ok) or len(time_columns) > 1:
        return None
    keyed = {p[6][:2] for p in ok if p[6] is not None}
    stable = [p for p in ok if p[6] is None or not p[6][2]]
    canary = [p for p in ok if p[6] is not None and p[6][2]]
    if len(keyed) > 1 or (keyed and (not canary or any(p[6] is None for p in stable))):
        return None  # one split, with both sides, or none
    segments, canary_segments = _contiguous(stable), _contiguous(canary)
    if segments is None or canary_segments is None or not segments:
        return None  # not contiguous stretches: not a view pipectl wrote
    split = None
    if keyed:
        key_columns, which = next(iter(keyed))
        split = KeySplit(
            columns=list(key_columns),
            percent=None if isinstance(which, tuple) else which,
            keys=list(which) if isinstance(which, tuple) else None,
            segments=[ViewSegment(table=t, since=since) for t, since in canary_segments],
        )
    return ParsedView(
        segments=segments,
        columns=cols,
        all_columns=alias == ALL_COLUMNS_ALIAS,
        time_column=next(iter(time_columns), None),
        split=split,
    )


_KeyPredicate = tuple[tuple[str, ...], int | tuple[str, ...], bool]
"""(key columns, bucket percent or listed keys, canary side) of a key predicate."""
_Select = tuple[str, list[str], str, str | None, str | None, str | None, _KeyPredicate | None]


def _contiguous(ok: list[_Select]) -> list[tuple[str, str | None]] | None:
    segments: list[tuple[str, str | None]] = []
    for i, (table, _, _, _, since, until, _) in enumerate(ok):
        next_since = ok[i + 1][4] if i + 1 < len(ok) else None
        if until != next_since or (i > 0 and since is None):
            return None
        segments.append((table, since))
    return segments


def _parse_select(tree: Any, default_schema: str) -> _Select | None:
    """(table, columns, alias, time column, since, until, key predicate) of ``SELECT c… FROM t [a]
    [WHERE …]``; the key predicate is (key columns, percent, canary side) (``plan.keysplit``)."""
    if not isinstance(tree, exp.Select):
        return None
    if any(tree.args.get(k) for k in ("joins", "group", "having", "order", "limit", "distinct", "with")):
        return None
    tables = list(tree.find_all(exp.Table))
    if len(tables) != 1 or not (tables[0].db or default_schema):
        return None
    cols: list[str] = []
    for e in tree.expressions:
        if not isinstance(e, exp.Column) or e.table:
            return None
        cols.append(e.name)
    t = tables[0]
    time_column = since = until = None
    keys: _KeyPredicate | None = None
    where = tree.args.get("where")
    for cond in _conjuncts(where.this) if where is not None else []:
        key = _key_predicate(cond)
        if key is not None and keys is None:
            keys = key
            continue
        if not isinstance(cond, exp.GTE | exp.LT) or not isinstance(cond.this, exp.Column):
            return None
        value = _timestamp_literal(cond.expression)
        if value is None or (time_column and cond.this.name != time_column):
            return None
        time_column = cond.this.name
        if isinstance(cond, exp.GTE):
            since = value
        else:
            until = value
    return f"{t.db or default_schema}.{t.name}", cols, t.alias, time_column, since, until, keys


def _unparen(e: Any) -> Any:
    """A copy of ``e`` without parentheses (Presto stores the view SQL it formats, with more)."""
    e = e.copy()
    while isinstance(e, exp.Paren):
        e = e.this
    for p in list(e.find_all(exp.Paren)):
        p.replace(p.this)
    return e


def _plain(e: Any) -> str:
    """SQL text without quotes or case: Presto stores ``"crc32"("to_utf8"(…))`` for ``crc32(to_utf8(…))``."""
    return str(e.sql(dialect="presto")).replace('"', "").lower()


def _key_predicate(cond: Any) -> _KeyPredicate | None:
    """``bucket(k…) < p`` → ((k…), p, True); ``NOT (bucket(k…) < p)`` → ((k…), p, False); the same
    with ``key(k…) IN ('a', …)`` → ((k…), ('a', …), …); else None. The bucket (key) must be exactly
    ``keysplit.bucket_sql`` (``key_sql``) of its columns (compared as parsed SQL)."""
    cond = _unparen(cond)
    canary = not isinstance(cond, exp.Not)
    if not canary:
        cond = _unparen(cond.this)
    if isinstance(cond, exp.In):
        listed = _listed(cond)
        return None if listed is None else (listed[0], listed[1], canary)
    if (
        not isinstance(cond, exp.LT)
        or not isinstance(cond.expression, exp.Literal)
        or cond.expression.is_string
    ):
        return None
    columns = tuple(c.name for c in cond.this.find_all(exp.Column))
    try:
        percent = int(str(cond.expression.this))
        want = _unparen(sqlglot.parse_one(bucket_sql(columns), read="presto"))
    except (ValueError, sqlglot.errors.SqlglotError):
        return None
    if _plain(want) != _plain(cond.this):
        return None
    return columns, percent, canary


def _listed(cond: Any) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """``key(k…) IN ('a', …)`` → ((k…), ('a', …)), the keys sorted; else None."""
    values = cond.expressions
    if (
        cond.args.get("query")
        or not values
        or not all(isinstance(v, exp.Literal) and v.is_string for v in values)
    ):
        return None
    columns = tuple(c.name for c in cond.this.find_all(exp.Column))
    try:
        want = _unparen(sqlglot.parse_one(key_sql(columns), read="presto"))
    except (ValueError, sqlglot.errors.SqlglotError):
        return None
    if _plain(want) != _plain(cond.this):
        return None
    return columns, tuple(sorted(str(v.this) for v in values))


def _conjuncts(e: Any) -> list[Any]:
    """``a AND (b AND c)`` → [a, b, c], parentheses removed (Presto stores ``WHERE (x < y)``)."""
    while isinstance(e, exp.Paren):
        e = e.this
    if isinstance(e, exp.And):
        return _conjuncts(e.this) + _conjuncts(e.expression)
    return [e]


def _timestamp_literal(e: Any) -> str | None:
    """The text of ``TIMESTAMP '…'`` (sqlglot reads it as a cast of a string)."""
    if (
        isinstance(e, exp.Cast | exp.TsOrDsToTimestamp)
        and isinstance(e.this, exp.Literal)
        and e.this.is_string
    ):
        return str(e.this.this)
    return None


def common_columns(tables: list[list[Column]]) -> list[str]:
    """Columns every table has, in the order of the last (newest) one."""
    if not tables:
        return []
    shared = set.intersection(*({c.name for c in cs} for cs in tables))
    return [c.name for c in tables[-1] if c.name in shared]


def hive_type(type_name: str) -> str:
    """A GetColumns type name as a normalized Hive type (as reported when it does not normalize)."""
    try:
        return normalize_hive_type(type_name)
    except ValueError:
        return type_name.strip().lower()
