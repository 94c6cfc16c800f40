"""Gate SQL: logical → stage tables with sqlglot; refusals for anything unsafe."""

from __future__ import annotations

import pytest

from controller.rollout.sqlrewrite import SqlRefused, quoted_table, rewrite_tables

M = {
    "telemetry.host_metrics_1m": "staging_telemetry.host_metrics_1m",
    "telemetry.hosts": "staging_telemetry.hosts",
}


def test_rewrites_and_quotes_the_table() -> None:
    got = rewrite_tables("SELECT count(*) FROM telemetry.host_metrics_1m", M)
    assert got == 'SELECT COUNT(*) FROM "staging_telemetry"."host_metrics_1m"'


def test_keeps_an_alias_and_adds_one_when_the_table_name_changes() -> None:
    m = {"telemetry.host_metrics_1m": "telemetry.host_metrics_1m__v1_1_0"}
    got = rewrite_tables("SELECT host_metrics_1m.samples FROM telemetry.host_metrics_1m", m)
    assert (
        got == 'SELECT host_metrics_1m.samples FROM "telemetry"."host_metrics_1m__v1_1_0" AS host_metrics_1m'
    )
    got = rewrite_tables("SELECT t.samples FROM telemetry.host_metrics_1m AS t", m)
    assert got == 'SELECT t.samples FROM "telemetry"."host_metrics_1m__v1_1_0" AS t'


def test_joins_subqueries_ctes_and_unions() -> None:
    sql = (
        "WITH recent AS (SELECT * FROM telemetry.host_metrics_1m WHERE samples > 0) "
        "SELECT count(*) FROM recent r JOIN telemetry.hosts h ON r.host = h.host "
        "UNION ALL SELECT count(*) FROM (SELECT host FROM Telemetry.Hosts) x"
    )
    got = rewrite_tables(sql, M)
    assert got.count('"staging_telemetry"."host_metrics_1m"') == 1
    assert got.count('"staging_telemetry"."hosts"') == 2
    assert "FROM recent AS r" in got


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT count(*) FROM telemetry.other", "not one of this release's tables"),
        ("SELECT count(*) FROM host_metrics_1m", "not qualified"),
        ("SELECT count(*) FROM hive.telemetry.host_metrics_1m", "names a catalog"),
        ("DELETE FROM telemetry.host_metrics_1m", "only a SELECT"),
        ("DROP TABLE telemetry.host_metrics_1m", "only a SELECT"),
        ("CREATE TABLE telemetry.x AS SELECT 1", "only a SELECT"),
        ("INSERT INTO telemetry.host_metrics_1m SELECT * FROM telemetry.hosts", "only a SELECT"),
        ("SELECT 1 FROM telemetry.hosts; DROP TABLE telemetry.hosts", "exactly one SELECT"),
        ("", "exactly one SELECT"),
        ("SELECT FROM WHERE (", "does not parse"),
    ],
)
def test_refusals(sql: str, why: str) -> None:
    with pytest.raises(SqlRefused, match=why):
        rewrite_tables(sql, M)


def test_injection_in_a_quoted_table_name_is_refused() -> None:
    sql = 'SELECT count(*) FROM "telemetry"."host_metrics_1m; DROP TABLE telemetry.hosts; --"'
    with pytest.raises(SqlRefused, match="not one of this release's tables"):
        rewrite_tables(sql, M)


def test_injection_through_the_mapping_is_refused() -> None:
    bad = {"telemetry.host_metrics_1m": 'staging_telemetry.x"; DROP TABLE y; --'}
    with pytest.raises(SqlRefused, match="invalid physical table name"):
        rewrite_tables("SELECT count(*) FROM telemetry.host_metrics_1m", bad)
    with pytest.raises(SqlRefused, match="invalid physical table name"):
        quoted_table("a.b.c.d")
    with pytest.raises(SqlRefused, match="invalid catalog"):
        quoted_table('ice"berg.b.c')


def test_a_table_another_catalog_reads_is_addressed_in_it() -> None:
    # an Iceberg table: the stage's catalog (hive) cannot read it, Presto's iceberg catalog does
    got = rewrite_tables(
        "SELECT count(*) FROM telemetry.host_metrics_1m", {"telemetry.host_metrics_1m": "iceberg.dev_t.x__v1"}
    )
    assert got == 'SELECT COUNT(*) FROM "iceberg"."dev_t"."x__v1" AS host_metrics_1m'
    assert quoted_table("iceberg.dev_t.x") == '"iceberg"."dev_t"."x"'


def test_string_literals_are_left_alone() -> None:
    got = rewrite_tables("SELECT count(*) FROM telemetry.hosts WHERE host = 'telemetry.hosts''; --'", M)
    assert got.endswith("WHERE host = 'telemetry.hosts''; --'")
