"""Checks of what the jobkit sink puts into SQL and paths: identifiers, table, query and partition
names, string literals; ``SinkError`` when one does not pass.

Imports only the standard library: it ships with the job, not the controller.
"""

from __future__ import annotations

import re
import unicodedata

HIVE_IDENT_RE = re.compile(r"\A[a-z_][a-z0-9_]{0,127}\Z")
# Query names end up in directory and file names, never in SQL.
QUERY_NAME_RE = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
# Partition values are embedded as SQL string literals and path segments.
PARTITION_VALUE_RE = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.:+-]{0,127}\Z")


class SinkError(RuntimeError):
    """The sink refused to write (bad identifier, schema mismatch, unsafe location)."""


def check_ident(name: str, what: str = "identifier") -> str:
    """Return ``name`` if it matches ``[a-z_][a-z0-9_]*``, else raise :class:`SinkError`."""
    if not HIVE_IDENT_RE.fullmatch(name):
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
    """Return ``name`` if it can name directories and files, else raise :class:`SinkError`."""
    if not QUERY_NAME_RE.fullmatch(name):
        raise SinkError(f"invalid query name {name!r}: must match [A-Za-z0-9_][A-Za-z0-9_.-]*")
    return name


def check_partition_value(value: object) -> str:
    """Return ``value`` if it can be a SQL string literal and a path segment, else raise
    :class:`SinkError`."""
    if not isinstance(value, str) or not PARTITION_VALUE_RE.fullmatch(value):
        raise SinkError(f"refusing partition value {value!r}: must match {PARTITION_VALUE_RE.pattern}")
    return value


def sql_string(value: str) -> str:
    """Single-quote a value that has no quote, backslash or control character (Unicode Cc)."""
    if any(c in value for c in "'\\") or any(unicodedata.category(c) == "Cc" for c in value):
        raise SinkError(f"refusing to put {value!r} into a SQL string literal")
    return f"'{value}'"
