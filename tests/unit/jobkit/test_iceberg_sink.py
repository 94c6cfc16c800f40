"""Unit tests of the exactly-once Iceberg sink's pure parts: which batches count as committed,
the snapshot properties, the MERGE statement, and (on a local Spark) that the MERGE's update
expressions combine a row exactly like the reference ``merge_rows``."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest

from controller.jobkit.iceberg_sink import (
    BATCH_ID_KEY,
    QUERY_ID_KEY,
    disjoint,
    last_committed_batch,
    merge_set_clause,
    merge_sql,
    merge_value_exprs,
    snapshot_properties,
    sql_literal,
    widen,
)
from controller.jobkit.sink import MergeSpec, SinkError, merge_rows
from tests.unit.jobkit.test_sink_merge import spark  # noqa: F401 (the module's local Spark fixture)

SPEC = MergeSpec(
    keys=("host", "window_start"), count="samples", weighted_mean=("avg_value",),
    maximum=("max_value",), minimum=("min_value",), total=("bytes",),
)


def test_last_committed_batch_counts_only_this_query_id() -> None:
    summaries: list[dict[str, str] | None] = [
        {QUERY_ID_KEY: "q1", BATCH_ID_KEY: "0"},
        {QUERY_ID_KEY: "q1", BATCH_ID_KEY: "3"},
        {QUERY_ID_KEY: "q0", BATCH_ID_KEY: "9"},  # an earlier checkpoint's batches
        {"operation": "replace"},  # compaction: no batch id
        None,
        {QUERY_ID_KEY: "q1", BATCH_ID_KEY: "x"},
    ]
    assert last_committed_batch(summaries, "q1") == 3
    assert last_committed_batch(summaries, "q0") == 9
    assert last_committed_batch(summaries, "q2") is None
    assert last_committed_batch([], "q1") is None


def test_snapshot_properties_name_query_id_batch_and_version() -> None:
    props = snapshot_properties("dev-hm", "abc", 7, "1.2.0")
    assert props == {"pipectl.query": "dev-hm", QUERY_ID_KEY: "abc", BATCH_ID_KEY: "7", "pipectl.version": "1.2.0"}
    assert last_committed_batch([props], "abc") == 7


def test_merge_sql_is_keyed_by_the_spec_keys_and_inserts_every_column() -> None:
    cols = ["host", "window_start", "samples", "avg_value", "max_value", "min_value", "bytes"]
    sql = merge_sql("iceberg.`db`.`t`", "v", SPEC, cols)
    assert sql.startswith("MERGE INTO iceberg.`db`.`t` t USING `v` s ON t.`host` = s.`host` AND "
                          "t.`window_start` = s.`window_start` WHEN MATCHED THEN UPDATE SET ")
    assert "`samples` = t.`samples` + s.`samples`" in sql
    assert "`max_value` = greatest(t.`max_value`, s.`max_value`)" in sql
    assert "`min_value` = least(t.`min_value`, s.`min_value`)" in sql
    assert sql.endswith("WHEN NOT MATCHED THEN INSERT (`host`, `window_start`, `samples`, `avg_value`, "
                        "`max_value`, `min_value`, `bytes`) VALUES (s.`host`, s.`window_start`, s.`samples`, "
                        "s.`avg_value`, s.`max_value`, s.`min_value`, s.`bytes`)")
    assert merge_set_clause(SPEC) in sql
    assert [c for c, _ in merge_value_exprs(SPEC)] == list(SPEC.value_columns)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ((10, 2.0, 5.0, 1.0, 100), (30, 4.0, 9.0, 0.5, 7)),
        ((10, None, 5.0, None, None), (30, 4.0, None, 0.5, 7)),
        ((1, 3.0, None, 2.0, 5), (2, None, 1.0, None, None)),
    ],
)
def test_merge_update_expressions_match_merge_rows(spark: Any, old: tuple[Any, ...], new: tuple[Any, ...]) -> None:  # noqa: F811
    names = ["samples", "avg_value", "max_value", "min_value", "bytes"]
    schema = "host string, window_start string, samples bigint, avg_value double, max_value double, " \
             "min_value double, bytes bigint"
    t = spark.createDataFrame([("h", "w", *old)], schema).alias("t")
    s = spark.createDataFrame([("h", "w", *new)], schema).alias("s")
    joined = t.join(s, ["host", "window_start"])
    got = joined.selectExpr(*[f"{e} AS {c}" for c, e in merge_value_exprs(SPEC)]).first().asDict()
    want = merge_rows(
        [dict(zip(["host", "window_start", *names], ("h", "w", *row), strict=True)) for row in (old, new)], SPEC
    )[0]
    for c in names:
        if want[c] is None or got[c] is None:
            assert got[c] == want[c], c
        else:
            assert math.isclose(got[c], want[c], rel_tol=1e-12), (c, got[c], want[c])


def test_merge_sql_bounds_the_target_scan_by_the_batch_range() -> None:
    lo, hi = dt.datetime(2026, 3, 1, 23, 58), dt.datetime(2026, 3, 2, 0, 1, 30)
    sql = merge_sql("iceberg.`db`.`t`", "v", SPEC, ["host"], {"window_start": (lo, hi), "host": ("a'1", "b")})
    assert ("ON t.`host` = s.`host` AND t.`window_start` = s.`window_start` AND t.`window_start` BETWEEN "
            "TIMESTAMP_NTZ '2026-03-01 23:58:00' AND TIMESTAMP_NTZ '2026-03-02 00:01:30' WHEN MATCHED") in sql
    assert "BETWEEN 'a" not in sql  # string bounds come from the data: not put into SQL
    assert sql_literal(3) == "3"
    assert sql_literal(dt.date(2026, 3, 2)) == "DATE '2026-03-02'"
    assert sql_literal(dt.datetime(2026, 3, 2, tzinfo=dt.UTC)).startswith("TIMESTAMP '2026-03-02 00:00:00")
    with pytest.raises(SinkError):
        sql_literal("web-01")


T = dt.datetime


def test_disjoint_appends_only_when_an_ordered_key_range_cannot_meet_the_tables() -> None:
    table = {"host": ("a", "z"), "window_start": (T(2026, 3, 1, 10, 0), T(2026, 3, 1, 10, 5))}
    later = {"host": ("a", "b"), "window_start": (T(2026, 3, 1, 10, 6), T(2026, 3, 1, 10, 9))}
    touching = {"host": ("a", "b"), "window_start": (T(2026, 3, 1, 10, 5), T(2026, 3, 1, 10, 9))}
    earlier = {"host": ("q", "r"), "window_start": (T(2026, 3, 1, 9, 0), T(2026, 3, 1, 9, 59))}
    assert disjoint(later, table)
    assert disjoint(earlier, table)  # a replayed past range that the table no longer holds
    assert not disjoint(touching, table)  # the window 10:05 may be a row already: MERGE
    # Strings say nothing about order in time; a host range outside the table's is not trusted.
    assert not disjoint({"host": ("zz", "zz"), "window_start": touching["window_start"]}, table)
    assert not disjoint(later, None)  # a table not read yet: nothing known, MERGE
    assert disjoint(later, {"host": (None, None), "window_start": (None, None)})  # an empty table
    assert not disjoint(later, {"host": ("a", "z")})  # window_start's range unknown
    assert not disjoint({"n": (True, True)}, {"n": (False, False)})  # booleans are not ranges


def test_widen_keeps_a_superset_of_every_committed_range() -> None:
    empty = {"window_start": (None, None), "host": (None, None)}
    r = widen(empty, {"window_start": (T(2026, 3, 1, 10), T(2026, 3, 1, 11)), "host": ("a", "b")})
    r = widen(r, {"window_start": (T(2026, 3, 1, 9), T(2026, 3, 1, 10, 30)), "host": (None, None)})
    assert r == {"window_start": (T(2026, 3, 1, 9), T(2026, 3, 1, 11)), "host": ("a", "b")}
    assert widen({"d": (None, None)}, {"d": (dt.date(2026, 3, 1), dt.date(2026, 3, 2))}) == {
        "d": (dt.date(2026, 3, 1), dt.date(2026, 3, 2))}
    # Values that do not compare (naive vs aware) make the range unknown: the sink then MERGEs.
    aware = T(2026, 3, 1, tzinfo=dt.UTC)
    r = widen({"w": (T(2026, 3, 1), T(2026, 3, 1))}, {"w": (aware, aware)})
    assert r == {} and not disjoint({"w": (T(2027, 1, 1), T(2027, 1, 1))}, r)
    assert widen(r, {"w": (aware, aware)}) == {}  # unknown stays unknown
