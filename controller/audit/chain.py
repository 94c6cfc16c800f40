"""The audit chain's hashing and its check: every column of a row, over RFC 8785 canonical JSON.

A row's hash is ``sha256("pipectl-audit/2\\n" + JCS(envelope))`` where the envelope holds every
column of the ``audit`` table but the hash itself::

    {"v": 2, "seq": 7, "record_id": "…", "ts": "2026-11-26T10:00:00.000000Z",
     "release": "host-metrics", "kind": "apply", "prev_hash": "<hash of #6>", "record": "<text>"}

so editing ``release`` (which ``pipectl audit RELEASE`` filters on), ``kind``, ``ts`` or ``seq``
breaks the chain as surely as editing the record. JCS (RFC 8785, the ``rfc8785`` package) fixes key
order, whitespace, string escapes and number spelling; the record text itself is stored in that form
too. JCS refuses what JSON numbers cannot carry exactly, so before canonicalizing, integers beyond
±(2**53 - 1) and non-finite floats are written as strings (``"12345678901234567890"``, ``"NaN"``).

Records written by pipectl before this scheme (hash = sha256(prev_hash + text), columns not
covered) are recognized and reported by number: such a ledger cannot be verified by this version.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import rfc8785

SCHEME = 2
GENESIS = "0" * 64
_DOMAIN = b"pipectl-audit/2\n"
_SAFE_INT = 2**53 - 1


def jsonable(value: Any) -> Any:
    """``value`` with what JCS cannot represent exactly written as strings (see the module doc)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if -_SAFE_INT <= value <= _SAFE_INT else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return str(value)


def canonical(value: Any) -> str:
    """RFC 8785 canonical JSON text of ``value`` (after ``jsonable``)."""
    return rfc8785.dumps(jsonable(value)).decode("utf-8")


def ts_text(ts: datetime) -> str:
    """The ``ts`` column as hashed: UTC, microseconds, ``Z`` (a naive value is UTC: SQLite's)."""
    aware = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return aware.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def row_hash(row: Mapping[str, Any]) -> str:
    """The hash of one ``audit`` row over every column but ``hash``."""
    envelope = {
        "v": SCHEME,
        "seq": int(row["seq"]),
        "record_id": row["record_id"],
        "ts": ts_text(row["ts"]),
        "release": row["release"],
        "kind": row["kind"],
        "prev_hash": row["prev_hash"],
        "record": row["record"],
    }
    return hashlib.sha256(_DOMAIN + canonical(envelope).encode("utf-8")).hexdigest()


def legacy_hash(prev_hash: str, text: str) -> str:
    """The pre-2 scheme: the record text only, chained; kept only to name such records."""
    return hashlib.sha256((prev_hash + text).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainCheck:
    """The result of walking the chain from the first row."""

    count: int
    head_seq: int
    head_hash: str
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _row_problem(r: Mapping[str, Any], expected_seq: int, prev: str) -> str | None:
    seq, rid = r["seq"], r["record_id"]
    where = f"record #{seq} ({rid})"
    if seq != expected_seq:
        return f"{where}: expected #{expected_seq} here: records are missing or were renumbered"
    if r["prev_hash"] != prev:
        return f"{where}: prev_hash does not match the hash of the record before it"
    if row_hash(r) != r["hash"]:
        if legacy_hash(prev, r["record"]) == r["hash"]:
            return (
                f"{where}: written by an older pipectl (hash over the record text only, columns not "
                "covered); this version cannot verify it — keep the old store as an archive "
                "(pipectl state backup) and start a new one (docs/runbooks.md, audit ledger)"
            )
        return f"{where}: content does not match its hash (a column or the record was edited)"
    try:
        inner = json.loads(r["record"]).get("record_id")
    except (json.JSONDecodeError, AttributeError):
        return f"{where}: not a JSON object"
    if inner != rid:
        return f"{where}: record id altered"
    return None


def check_chain(rows: Sequence[Mapping[str, Any]]) -> ChainCheck:
    """Walk ``rows`` (ordered by seq) from the genesis hash; the first bad row is named."""
    prev, expected = GENESIS, 1
    for r in rows:
        problem = _row_problem(r, expected, prev)
        if problem:
            return ChainCheck(len(rows), expected - 1, prev, problem)
        prev, expected = r["hash"], expected + 1
    return ChainCheck(len(rows), expected - 1, prev)
