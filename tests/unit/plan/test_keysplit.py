"""The key bucket of key-subset canary serving: Presto SQL text, the Python mirror, the predicates."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.model.identifiers import IdentifierError
from controller.plan.keysplit import (
    MAX_LISTED_KEYS,
    bucket_of,
    bucket_sql,
    canary_predicate,
    key_rank,
    listed_predicate,
    pick_keys,
    served_predicate,
    split_share,
    stable_predicate,
)
from controller.plan.resources import KeySplit, ViewSegment


def test_bucket_sql_of_one_and_several_columns() -> None:
    assert bucket_sql(["host"]) == "(crc32(to_utf8(coalesce(CAST(\"host\" AS varchar), ''))) % 100)"
    assert bucket_sql(["host", "metric"]) == (
        "(crc32(to_utf8(concat(coalesce(CAST(\"host\" AS varchar), ''), chr(31), "
        "coalesce(CAST(\"metric\" AS varchar), '')))) % 100)"
    )


def test_predicates_are_complements() -> None:
    assert canary_predicate(["host"], 10) == bucket_sql(["host"]) + " < 10"
    assert stable_predicate(["host"], 10) == f"NOT ({bucket_sql(['host'])} < 10)"


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one key column"):
        bucket_sql([])
    with pytest.raises(IdentifierError):
        bucket_sql(['host" OR 1=1 --'])
    with pytest.raises(ValueError, match=r"0\.\.100"):
        canary_predicate(["host"], 101)


def test_bucket_of_matches_crc32_of_the_joined_key() -> None:
    assert bucket_of(["host-1"]) == zlib.crc32(b"host-1") % 100 == 99  # Presto: the same, on the stack
    assert bucket_of(["a", None]) == zlib.crc32(b"a\x1f") % 100


@given(st.lists(st.text(), min_size=1, max_size=3))
def test_bucket_of_is_in_range_and_deterministic(values: list[str]) -> None:
    b = bucket_of(values)
    assert 0 <= b < 100 and b == bucket_of(list(values))


HOSTS = [f"host-{i:02d}" for i in range(40)]


def test_listed_steps_serve_exactly_their_share_of_the_keys() -> None:
    # buckets give 6 of these 40 hosts at 10 % and 17 at 50 %; a list gives 4 and 20
    assert sum(1 for h in HOSTS if bucket_of([h]) < 10) == 6
    ten = pick_keys(["host"], HOSTS, 10)
    fifty = pick_keys(["host"], list(reversed(HOSTS)), 50, ten or [])
    assert ten is not None and fifty is not None and (len(ten), len(fifty)) == (4, 20)
    assert set(ten) <= set(fifty) and fifty == sorted(fifty)
    assert ten == sorted(sorted(HOSTS, key=key_rank)[:4])  # the first by CRC-32: deterministic
    assert [len(pick_keys(["host"], HOSTS[:n], 10) or []) for n in (1, 4, 5, 15, 16)] == [0, 0, 1, 2, 2]


def test_a_later_step_keeps_the_keys_listed_before_and_new_keys_join_in_rank_order() -> None:
    ten = pick_keys(["host"], HOSTS, 10) or []
    gone = ten[0]  # a listed key no longer in the table stays listed (it never goes back)
    more = [h for h in HOSTS if h != gone] + [f"new-{i}" for i in range(10)]
    fifty = pick_keys(["host"], more, 50, ten)
    assert fifty is not None and set(ten) <= set(fifty) and len(fifty) == 25  # round(50 % of 50)


def test_hash_buckets_for_many_keys_several_columns_100_percent_or_unquotable_keys() -> None:
    assert pick_keys(["host"], [f"h{i}" for i in range(MAX_LISTED_KEYS + 1)], 10) is None
    assert pick_keys(["host", "metric"], ["a\x1fb"], 10) is None
    assert pick_keys(["host"], HOSTS, 100) is None
    assert pick_keys(["host"], [*HOSTS, "bad\x07"], 10) is None


def test_listed_predicate_and_served_predicate() -> None:
    assert listed_predicate(["host"], ["a", "it's"]) == (
        "coalesce(CAST(\"host\" AS varchar), '') IN ('a', 'it''s')"
    )
    assert served_predicate((("host",), ("a",))) == listed_predicate(["host"], ["a"])
    assert served_predicate((("host",), 10)) == canary_predicate(["host"], 10)
    assert served_predicate((("host",), ())) == canary_predicate(["host"], 0)  # nothing served
    with pytest.raises(ValueError):
        listed_predicate(["host"], [])


def test_split_share() -> None:
    seg = [ViewSegment(table="db.t")]
    assert split_share(None) == 0
    assert split_share(KeySplit(columns=["h"], percent=10, segments=seg)) == 10
    assert split_share(KeySplit(columns=["h"], percent=10, keys=[], segments=seg)) == 0
    assert split_share(KeySplit(columns=["h"], percent=None, keys=["a"], segments=seg)) == 1
    assert split_share(KeySplit(columns=["h"], percent=100, keys=["a"], segments=seg)) == 100
