"""The key bucket of key-subset canary serving, in Presto SQL and in Python.

A row's bucket is ``crc32(utf8(k1 ␟ k2 …)) % 100``: the key columns cast to varchar (NULL as the
empty string, so no row has a NULL bucket), joined by the unit separator U+001F, hashed with
CRC-32. The serving view is a Presto view (``controller.adapters.hive._put_view`` creates it through
Presto), and the canary comparison reads through Presto too, so Presto is the only engine that
evaluates it: one function, ``crc32`` (an unsigned 32-bit value, so ``% 100`` is in 0..99 with no
sign to fix). ``bucket_of`` computes the same in Python (``zlib.crc32``) for string keys, so tests
and people can tell which keys a step serves from which version.

A view at ``p`` percent takes the rows with ``bucket < p`` from the canary's table and the rows with
``NOT (bucket < p)`` from the stable one: the two predicates partition the key space exactly.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from controller.model.identifiers import quote_presto
from controller.plan.resources import ViewSegment

BUCKETS = 100
SEPARATOR = "\x1f"


class KeyStep(BaseModel):
    """A key-subset canary under way (``controller.rollout.keysteps``; stored in the stage's rollout
    document, ``controller.store.rollout.StageRollout.key_step``): ``version`` serves ``percent`` %
    of the keys (bucket of ``columns`` < percent) through ``segments`` (per logical view: the stable
    version's rows before the new version's cutover minute, the new version's from it on). Recorded
    before the view is converged onto it."""

    model_config = ConfigDict(extra="ignore")
    version: str
    percent: int
    columns: list[str]
    segments: dict[str, list[ViewSegment]]
    since: datetime
    """When this step was recorded (the controller's clock)."""


def bucket_sql(columns: Sequence[str]) -> str:
    """The bucket (0..99) of a row's key columns, as a Presto expression."""
    if not columns:
        raise ValueError("a key bucket needs at least one key column")
    parts = [f"coalesce(CAST({quote_presto(c)} AS varchar), '')" for c in columns]
    key = parts[0] if len(parts) == 1 else "concat(" + ", chr(31), ".join(parts) + ")"
    return f"(crc32(to_utf8({key})) % {BUCKETS})"


def canary_predicate(columns: Sequence[str], percent: int) -> str:
    """Rows the canary serves at ``percent``."""
    return f"{bucket_sql(columns)} < {_percent(percent)}"


def stable_predicate(columns: Sequence[str], percent: int) -> str:
    """Rows the stable version serves at ``percent``: exactly the others."""
    return f"NOT ({canary_predicate(columns, percent)})"


def bucket_of(values: Sequence[str | None]) -> int:
    """``bucket_sql`` in Python, for string key values (None as Presto's NULL)."""
    key = SEPARATOR.join("" if v is None else v for v in values)
    return zlib.crc32(key.encode("utf-8")) % BUCKETS


def _percent(p: int) -> int:
    if not 0 <= p <= BUCKETS:
        raise ValueError(f"a key split percent is in 0..100, got {p}")
    return int(p)
