"""What a manifest may declare for an Apache Iceberg table (``format: iceberg``): the column types
Iceberg stores as declared, and hidden partition transforms (``days(window_start)``).

Pure checks, used by the manifest model and by the plan rules.
"""

from __future__ import annotations

import re

from controller.model import identifiers as ids

FORMAT = "iceberg"
"""``TableSpec.format`` / ``TableResource.format`` of an Iceberg table."""

PRESTO_CATALOG = "iceberg"
"""The Presto catalog that reads Iceberg tables (Presto's Hive connector cannot); Hive tables and
views stay in the stage's own catalog (``Environment.spec.presto.catalog``)."""

# Hive types (as ``normalize_hive_type`` writes them) that an Iceberg table keeps as declared.
# Others would come back as another type (char/varchar → string, tinyint/smallint → int) and show
# as drift on every pass, so the manifest refuses them.
_SCALAR = frozenset({"boolean", "int", "bigint", "float", "double", "date", "timestamp", "string", "binary"})
_DECIMAL = re.compile(r"decimal\((\d+),(\d+)\)")
_TIME_TRANSFORMS = ("years", "months", "days", "hours")
_TRANSFORM = re.compile(r"\A\s*([a-z_]+)\s*\(\s*(?:(\d+)\s*,\s*)?([a-z_][a-z0-9_]*)\s*\)\s*\Z")


def reading_catalog(table_format: str) -> str | None:
    """The Presto catalog a table of ``table_format`` must be read in; None: the stage's own."""
    return PRESTO_CATALOG if table_format == FORMAT else None


def check_iceberg_type(hive_type: str) -> str:
    """``hive_type`` (normalized) if an Iceberg table stores it as declared, else IdentifierError."""
    if hive_type in _SCALAR or _DECIMAL.fullmatch(hive_type):
        return hive_type
    raise ids.IdentifierError(
        f"type {hive_type!r} is not supported for format iceberg (use one of "
        f"{', '.join(sorted(_SCALAR))}, decimal(p,s))"
    )


def normalize_transform(text: str) -> str:
    """A partition transform in the form Spark reports it: ``days(c)``, ``bucket(16, c)``,
    ``truncate(4, c)``, or the column name alone for identity (``identity(c)`` or ``c``)."""
    raw = text.strip()
    if re.fullmatch(r"[a-z_][a-z0-9_]*", raw):
        return ids.check_hive_ident(raw, "column")
    m = _TRANSFORM.fullmatch(raw)
    if not m:
        raise ids.IdentifierError(
            f"partition transform {text!r} is not one of COLUMN, identity(COLUMN), years|months|days|"
            "hours(COLUMN), bucket(N, COLUMN), truncate(N, COLUMN)"
        )
    fn, n, col = m.group(1), m.group(2), ids.check_hive_ident(m.group(3), "column")
    if fn == "identity" and n is None:
        return col
    if fn in _TIME_TRANSFORMS and n is None:
        return f"{fn}({col})"
    if fn in ("bucket", "truncate") and n is not None and int(n) > 0:
        return f"{fn}({int(n)}, {col})"
    raise ids.IdentifierError(
        f"partition transform {text!r}: {fn} takes "
        + ("(N, COLUMN) with N > 0" if fn in ("bucket", "truncate") else "(COLUMN)")
    )


def transform_column(transform: str) -> str:
    """The source column of a normalized transform."""
    return transform.rsplit("(", 1)[-1].rsplit(",", 1)[-1].strip(" )")


def is_promotion(old: str, new: str) -> bool:
    """Whether Iceberg's schema evolution changes ``old`` to ``new`` in place (metadata only, files
    untouched): int → bigint, float → double, decimal(P,S) → decimal(P',S) with P' > P."""
    if (old, new) in (("int", "bigint"), ("float", "double")):
        return True
    do, dn = _DECIMAL.fullmatch(old), _DECIMAL.fullmatch(new)
    return bool(do and dn and do.group(2) == dn.group(2) and int(dn.group(1)) > int(do.group(1)))


def time_transform(partitioning: list[str], column: str) -> str | None:
    """The finest time transform (``hours`` < ``days`` < ``months`` < ``years``) the table is
    partitioned by of ``column``, or None."""
    found = [t.split("(", 1)[0] for t in partitioning if "(" in t and transform_column(t) == column]
    for fn in reversed(_TIME_TRANSFORMS):
        if fn in found:
            return fn
    return None
