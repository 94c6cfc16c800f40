"""Presto types and partitions of transforms: Presto type names as Hive types, the contract check
against the types Presto wrote, and the typed predicate naming one partition.

Pure functions (no server), used by ``controller.adapters.transforms``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from controller.model.errors import PermanentBackendError
from controller.model.identifiers import (
    check_hive_ident,
    normalize_hive_type,
    presto_string_literal,
    quote_presto,
)
from controller.plan.resources import TransformResource

BACKEND = "presto"
_DATE = re.compile(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_INT = re.compile(r"\A-?[0-9]{1,19}\Z")


_PRESTO_TO_HIVE = {"varchar": "string", "integer": "int", "real": "float", "varbinary": "binary"}


def presto_to_hive_type(presto_type: str) -> str:
    """``varchar`` → ``string``, ``integer`` → ``int``, ``array(varchar)`` → ``array<string>``, …"""
    t = presto_type.strip().lower()
    if t in _PRESTO_TO_HIVE:
        return _PRESTO_TO_HIVE[t]
    m = re.fullmatch(r"array\((.*)\)", t)
    if m:
        return f"array<{presto_to_hive_type(m.group(1))}>"
    m = re.fullmatch(r"map\(([^,]+),\s*(.*)\)", t)
    if m:
        return f"map<{presto_to_hive_type(m.group(1))},{presto_to_hive_type(m.group(2))}>"
    m = re.fullmatch(r"timestamp(\(\d+\))?", t)
    if m:
        return "timestamp"
    try:
        return normalize_hive_type(t)
    except ValueError:
        return t


def contract_mismatch(desired: TransformResource, columns: Sequence[tuple[str, str, bool]]) -> list[str]:
    """What breaks the declared contract: missing, retyped and undeclared columns (none without one)."""
    if desired.contract is None:
        return []
    got = {n: presto_to_hive_type(t) for n, t, _ in columns}
    want = {c.name: c.type for c in desired.contract}
    out = [f"column {n} missing (declared {t})" for n, t in want.items() if n not in got]
    out += [f"column {n} is {got[n]}, declared {t}" for n, t in want.items() if n in got and got[n] != t]
    out += [f"column {n} ({got[n]}) is not declared" for n in got if n not in want]
    return out


def partition_predicate(partition: str, columns: Sequence[tuple[str, str, bool]]) -> str:
    """``2026-01-01`` or ``dt=2026-01-01/k=v`` → a typed ``"dt" = '2026-01-01' AND …`` predicate."""
    keys = [(n, t) for n, t, is_part in columns if is_part]
    if not keys:
        raise PermanentBackendError(BACKEND, "the table has no partition columns")
    if "=" in partition:
        values = dict(p.split("=", 1) for p in partition.split("/"))
    elif len(keys) == 1:
        values = {keys[0][0]: partition}
    else:
        raise PermanentBackendError(
            BACKEND, f"partition {partition!r}: name every partition column ({', '.join(n for n, _ in keys)})"
        )
    if set(values) != {n for n, _ in keys}:
        raise PermanentBackendError(
            BACKEND, f"partition {partition!r} must name exactly {', '.join(n for n, _ in keys)}"
        )
    parts = []
    for n, t in keys:
        v = values[n]
        t = t.lower()
        if t.startswith("varchar") or t.startswith("char"):
            lit = presto_string_literal(v)
        elif t == "date" and _DATE.fullmatch(v):
            lit = f"DATE {presto_string_literal(v)}"
        elif t in {"tinyint", "smallint", "integer", "bigint"} and _INT.fullmatch(v):
            lit = v
        else:
            raise PermanentBackendError(BACKEND, f"partition value {v!r} does not fit column {n} ({t})")
        parts.append(f"{quote_presto(check_hive_ident(n, 'column'))} = {lit}")
    return " AND ".join(parts)
