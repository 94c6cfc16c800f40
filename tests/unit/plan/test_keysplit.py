"""The key bucket of key-subset canary serving: Presto SQL text, the Python mirror, the predicates."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.model.identifiers import IdentifierError
from controller.plan.keysplit import bucket_of, bucket_sql, canary_predicate, stable_predicate


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
