"""The serving view of a key-subset canary, offline: the SQL the Hive adapter sends to Presto and
its reading back (so a converged view plans nothing)."""

from __future__ import annotations

from controller.adapters.hive import HiveAdapter, parse_view_sql
from controller.adapters.presto import PrestoClient
from controller.plan.actions import DiffContext
from controller.plan.keysplit import bucket_sql, key_sql
from controller.plan.resources import KeySplit, ViewResource, ViewSegment
from controller.plan.rules.hive import diff_view

STABLE: list[tuple[str, str | None]] = [("db.m__v1", None)]
CANARY = [ViewSegment(table="db.m__v1"), ViewSegment(table="db.m__v2", since="2026-11-26 18:00:00")]


def _sql(percent: int, columns: tuple[str, ...] = ("host",)) -> str:
    split = KeySplit(columns=list(columns), percent=percent, segments=CANARY)
    adapter = HiveAdapter("127.0.0.1", presto=PrestoClient("127.0.0.1"))
    # what observe would have learned: Hive tables (so no backend is asked which catalog holds them)
    adapter._iceberg.update({("db", "m__v1"): False, ("db", "m__v2"): False})
    return adapter._view_query(STABLE, ["host", "n"], False, "window_start", split)


def test_split_view_takes_canary_keys_from_the_canary_side_and_the_rest_from_stable() -> None:
    b = bucket_sql(["host"])
    assert _sql(10) == (
        f'SELECT "host", "n" FROM "hive"."db"."m__v1" WHERE NOT ({b} < 10) UNION ALL '
        f'SELECT "host", "n" FROM "hive"."db"."m__v1" WHERE "window_start" < TIMESTAMP \'2026-11-26 18:00:00\' '
        f"AND {b} < 10 UNION ALL "
        f'SELECT "host", "n" FROM "hive"."db"."m__v2" WHERE "window_start" >= TIMESTAMP \'2026-11-26 18:00:00\' '
        f"AND {b} < 10"
    )


def test_zero_and_hundred_percent_are_plain_views_of_one_side() -> None:
    assert _sql(0) == 'SELECT "host", "n" FROM "hive"."db"."m__v1"'
    v = parse_view_sql(_sql(100))
    assert v is not None and v.split is None
    assert v.segments == [(s.table, s.since) for s in CANARY]


def test_split_view_round_trips_through_the_parser() -> None:
    for columns in (("host",), ("host", "metric")):
        v = parse_view_sql(_sql(50, columns))
        assert v is not None and v.segments == STABLE and v.time_column == "window_start"
        assert v.split == KeySplit(columns=list(columns), percent=50, segments=CANARY)


def test_parser_reads_presto_formatted_parentheses() -> None:
    b = bucket_sql(["host"])
    sql = (
        f'SELECT "host" FROM "hive"."db"."m__v1" WHERE (NOT (({b}) < 25)) UNION ALL '
        f'SELECT "host" FROM "hive"."db"."m__v2" WHERE (({b}) < 25)'
    )
    v = parse_view_sql(sql)
    assert v is not None and v.split is not None and (v.split.percent, v.split.columns) == (25, ["host"])


def test_parser_reads_the_sql_presto_stores() -> None:
    """As PrestoDB 0.287 stores the view (``originalSql``, read on the stack): function names quoted."""
    b = """(("crc32"("to_utf8"(COALESCE(CAST("host" AS varchar), ''))) % 100) < 10)"""
    sql = (
        f'SELECT\n  "host"\n, "window_start"\nFROM\n  hive.db.a "pipectl_all"\nWHERE (NOT {b})\n'
        f'UNION ALL SELECT\n  "host"\n, "window_start"\nFROM\n  hive.db.b "pipectl_all"\n'
        f"WHERE ((\"window_start\" >= TIMESTAMP '2026-01-01 11:05:00') AND {b})"
    )
    v = parse_view_sql(sql)
    assert v is not None and v.segments == [("db.a", None)] and v.split is not None
    assert (v.split.columns, v.split.percent) == (["host"], 10)
    assert v.split.segments == [ViewSegment(table="db.b", since="2026-01-01 11:05:00")]


def test_parser_refuses_views_that_do_not_partition_the_keys() -> None:
    b = bucket_sql(["host"])
    one_side = f'SELECT "host" FROM "hive"."db"."m__v2" WHERE {b} < 25'
    two_percents = f'SELECT "host" FROM "db"."a" WHERE NOT ({b} < 25) UNION ALL SELECT "host" FROM "db"."b" WHERE {b} < 50'
    other_hash = (
        'SELECT "host" FROM "db"."a" WHERE NOT (length("host") < 25) UNION ALL '
        'SELECT "host" FROM "db"."b" WHERE length("host") < 25'
    )
    unfiltered_stable = f'SELECT "host" FROM "db"."a" UNION ALL SELECT "host" FROM "db"."b" WHERE {b} < 25'
    for sql in (one_side, two_percents, other_hash, unfiltered_stable):
        assert parse_view_sql(sql) is None, sql


def test_observed_split_view_is_converged_with_its_desired_view() -> None:
    v = parse_view_sql(_sql(10))
    assert v is not None
    live = ViewResource(name="db.v", target="db.m__v1", columns=["host", "n"], key_split=v.split)
    desired = live.model_copy(update={"key_split": KeySplit(columns=["host"], percent=10, segments=CANARY)})
    assert diff_view(desired, live, DiffContext()) == []
    moved = desired.model_copy(update={"key_split": KeySplit(columns=["host"], percent=50, segments=CANARY)})
    assert [a.op for a in diff_view(moved, live, DiffContext())] == ["replace"]


def _listed(keys: list[str], percent: int | None = 10) -> KeySplit:
    return KeySplit(columns=["host"], percent=percent, keys=keys, segments=CANARY)


def _listed_sql(keys: list[str]) -> str:
    adapter = HiveAdapter("127.0.0.1", presto=PrestoClient("127.0.0.1"))
    adapter._iceberg.update({("db", "m__v1"): False, ("db", "m__v2"): False})
    return adapter._view_query(STABLE, ["host", "n"], False, "window_start", _listed(keys))


def test_a_listed_split_serves_exactly_its_keys_from_the_canary_side() -> None:
    k = key_sql(["host"])
    assert _listed_sql(["host-03", "o'k"]) == (
        f'SELECT "host", "n" FROM "hive"."db"."m__v1" WHERE NOT ({k} IN (\'host-03\', \'o\'\'k\')) UNION ALL '
        f'SELECT "host", "n" FROM "hive"."db"."m__v1" WHERE "window_start" < TIMESTAMP \'2026-11-26 18:00:00\' '
        f"AND {k} IN ('host-03', 'o''k') UNION ALL "
        f'SELECT "host", "n" FROM "hive"."db"."m__v2" WHERE "window_start" >= TIMESTAMP \'2026-11-26 18:00:00\' '
        f"AND {k} IN ('host-03', 'o''k')"
    )
    assert _listed_sql([]) == 'SELECT "host", "n" FROM "hive"."db"."m__v1"'  # no key listed: stable alone


def test_a_listed_split_round_trips_and_converges() -> None:
    v = parse_view_sql(_listed_sql(["host-03", "o'k"]))
    assert v is not None and v.segments == STABLE and v.split is not None
    assert v.split == _listed(["host-03", "o'k"], percent=None)  # the SQL holds the keys, not the step
    live = ViewResource(name="db.v", target="db.m__v1", columns=["host", "n"], key_split=v.split)
    desired = live.model_copy(update={"key_split": _listed(["host-03", "o'k"])})
    assert diff_view(desired, live, DiffContext()) == []
    more = live.model_copy(update={"key_split": _listed(["host-03", "host-07", "o'k"], 50)})
    (action,) = diff_view(more, live, DiffContext())
    assert action.op == "replace" and "in [host-03, host-07, o'k]" in str(action.changes[0].new)
    bucket = live.model_copy(update={"key_split": KeySplit(columns=["host"], percent=10, segments=CANARY)})
    assert [a.op for a in diff_view(bucket, live, DiffContext())] == ["replace"]


def test_parser_reads_a_listed_split_as_presto_stores_it() -> None:
    k = """COALESCE(CAST("host" AS varchar), '')"""
    sql = (
        f"SELECT\n  \"host\"\nFROM\n  hive.db.a \"pipectl_all\"\nWHERE (NOT ({k} IN ('h1', 'h2')))\n"
        f'UNION ALL SELECT\n  "host"\nFROM\n  hive.db.b "pipectl_all"\n'
        f"WHERE ((\"window_start\" >= TIMESTAMP '2026-01-01 11:05:00') AND ({k} IN ('h2', 'h1')))"
    )
    v = parse_view_sql(sql)
    assert v is not None and v.split is not None and v.split.keys == ["h1", "h2"]
    other_keys = sql.replace("('h2', 'h1')", "('h2', 'h3')")
    other_column = sql.replace('CAST("host"', 'CAST("metric"', 1)
    for bad in (other_keys, other_column):
        assert parse_view_sql(bad) is None, bad
