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

Exact shares (``pick_keys``): a share of 100 buckets is not a share of a few dozen keys (6 of the 40
hosts ``host-00``…``host-39`` have a bucket below 10). So when a step starts, the controller reads
the stable table's distinct keys (the same key text, ``key_sql``) and, for up to ``MAX_LISTED_KEYS``
of them (keys of one column only, ``listable``), takes ``round(p * n / 100)`` in the order of their
CRC-32 (then their text): the step's key list, recorded in the step before the view moves, rendered
as ``key IN (…)`` on the canary side and ``NOT (key IN (…))`` on the stable side (again an exact
partition: the key text is never NULL). A later step keeps the earlier step's keys and adds the next
ones in that order, so a key never goes back to the stable version while the steps grow; a key that
first appears after its step was recorded stays on the stable side. More keys than
``MAX_LISTED_KEYS``: hash buckets, as above.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from controller.model.identifiers import IdentifierError, presto_string_literal, quote_presto
from controller.plan.resources import KeySplit, ViewResource, ViewSegment

BUCKETS = 100
SEPARATOR = "\x1f"
MAX_LISTED_KEYS = 1000
"""Above this many distinct keys a step is a share of the hash buckets, not a key list."""


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
    keys: list[str] | None = None
    """The keys the new version serves (``key_sql`` text, ``pick_keys``); None: ``bucket < percent``
    (more than ``MAX_LISTED_KEYS`` keys, 100 %, or a step recorded before key lists existed)."""
    segments: dict[str, list[ViewSegment]]
    since: datetime
    """When this step was recorded (the controller's clock)."""
    served_at: datetime | None = None
    """When the new version's rows from its cutover on were first seen in its tables, so the view
    serves them (``rollout.keysteps.served_hold``); None: not yet (no step moves on before)."""


KeyFilter = tuple[tuple[str, ...], int | tuple[str, ...]]
"""The keys a step serves, as a gate reads them: (key columns, bucket percent or the listed keys)."""


def served_predicate(keys: KeyFilter) -> str:
    """The canary side's predicate of a step (``canary_predicate`` or ``listed_predicate``; an empty
    list serves nothing: ``bucket < 0``)."""
    columns, which = keys
    if isinstance(which, int):
        return canary_predicate(columns, which)
    return listed_predicate(columns, which) if which else canary_predicate(columns, 0)


def key_sql(columns: Sequence[str]) -> str:
    """A row's key text as a Presto expression: the key columns as varchar (NULL as ''), joined by
    U+001F; never NULL."""
    if not columns:
        raise ValueError("a key bucket needs at least one key column")
    parts = [f"coalesce(CAST({quote_presto(c)} AS varchar), '')" for c in columns]
    return parts[0] if len(parts) == 1 else "concat(" + ", chr(31), ".join(parts) + ")"


def bucket_sql(columns: Sequence[str]) -> str:
    """The bucket (0..99) of a row's key columns, as a Presto expression."""
    return f"(crc32(to_utf8({key_sql(columns)})) % {BUCKETS})"


def canary_predicate(columns: Sequence[str], percent: int) -> str:
    """Rows the canary serves at ``percent``."""
    return f"{bucket_sql(columns)} < {_percent(percent)}"


def stable_predicate(columns: Sequence[str], percent: int) -> str:
    """Rows the stable version serves at ``percent``: exactly the others."""
    return f"NOT ({canary_predicate(columns, percent)})"


def listed_predicate(columns: Sequence[str], keys: Sequence[str]) -> str:
    """Rows whose key text is one of ``keys`` (at least one)."""
    if not keys:
        raise ValueError("a key list needs at least one key")
    return f"{key_sql(columns)} IN ({', '.join(presto_string_literal(k) for k in keys)})"


def listable(columns: Sequence[str]) -> bool:
    """Whether steps over these key columns list their keys: one column (a key text of several
    holds U+001F, which a Presto string literal of the view may not)."""
    return len(columns) == 1


def pick_keys(
    columns: Sequence[str], present: Sequence[str], percent: int, before: Sequence[str] = ()
) -> list[str] | None:
    """The keys the new version serves at ``percent`` of the keys ``present`` in the stable table,
    keeping ``before`` (the previous step's list): ``round(percent * n / 100)`` keys of the n known
    (present or listed before), those of ``before`` first, then in the order of ``key_rank``;
    sorted. None (the step is a share of the buckets) at 100 %, above ``MAX_LISTED_KEYS`` keys, or
    for keys of several columns (``listable``)."""
    known = set(present) | set(before)
    if _percent(percent) >= BUCKETS or len(known) > MAX_LISTED_KEYS or not listable(columns):
        return None
    if not all(_literal_ok(k) for k in known):
        return None  # a key a Presto string literal cannot hold (a control character): buckets
    want = (percent * len(known) * 2 + BUCKETS) // (2 * BUCKETS)  # round half up, in integers
    kept = set(before)
    added = sorted(known - kept, key=key_rank)[: max(0, want - len(kept))]
    return sorted(kept | set(added))


def key_rank(key: str) -> tuple[int, str]:
    """The order keys join a step in: their CRC-32 (spread, stable across runs), then their text."""
    return zlib.crc32(key.encode("utf-8")), key


def key_text(values: Sequence[str | None]) -> str:
    """``key_sql`` in Python, for string key values (None as Presto's NULL)."""
    return SEPARATOR.join("" if v is None else v for v in values)


def bucket_of(values: Sequence[str | None]) -> int:
    """``bucket_sql`` in Python, for string key values (None as Presto's NULL)."""
    return zlib.crc32(key_text(values).encode("utf-8")) % BUCKETS


def split_share(split: KeySplit | None) -> int:
    """How much of the key space a split serves from its segments: 0 (none: no split, 0 %, or an
    empty key list), 100 (all: 100 %), else the percent (a key list's is its step's)."""
    if split is None:
        return 0
    if split.percent is not None and split.percent >= BUCKETS:
        return BUCKETS
    if split.keys is not None:
        return (split.percent or 1) if split.keys else 0
    return split.percent or 0


Served = tuple[tuple[str, ...], int | tuple[str, ...], list[tuple[str, str | None]]]
"""A split as it serves: (key columns, bucket percent or the listed keys, canary segments)."""


def served_split(view: ViewResource) -> Served | None:
    """A view's key split as it serves: None at 0 % and 100 % (one side serves every key); a listed
    split by its keys (its percent is not in the SQL)."""
    s = view.key_split
    share = split_share(s)
    if s is None or share in (0, BUCKETS):
        return None
    which: int | tuple[str, ...] = tuple(s.keys) if s.keys else share
    return tuple(s.columns), which, [(g.table, g.since) for g in s.segments]


def split_text(split: Served | None) -> str | None:
    """A split as a plan shows it."""
    if split is None:
        return None
    columns, which, segs = split
    tables = ", ".join(t if since is None else f"{t} from {since}" for t, since in segs)
    if isinstance(which, tuple):
        listed = ", ".join(which[:5]) + (f", … ({len(which)} keys)" if len(which) > 5 else "")
        return f"keys ({', '.join(columns)}) in [{listed}] from {tables}"
    return f"keys ({', '.join(columns)}) with bucket < {which} from {tables}"


def _literal_ok(key: str) -> bool:
    try:
        presto_string_literal(key)
    except IdentifierError:
        return False
    return True


def _percent(p: int) -> int:
    if not 0 <= p <= BUCKETS:
        raise ValueError(f"a key split percent is in 0..100, got {p}")
    return int(p)
