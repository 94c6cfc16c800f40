"""Hive adapter parts that need no server: parsing what Spark and Presto report, and the SQL written.

The texts below are copied from the stack's Spark 3.5.9 Thrift Server (``SHOW TABLE EXTENDED``)
and PrestoDB 0.287 (the stored view SQL).
"""

from __future__ import annotations

import base64
import json

import pytest

from controller.adapters.hive import (
    ALL_COLUMNS_ALIAS,
    HiveAdapter,
    create_table_sql,
    parse_presto_view,
    parse_properties,
    parse_table_info,
    parse_view_sql,
)
from controller.adapters.presto import PrestoClient
from controller.model.errors import PermanentBackendError
from controller.model.identifiers import IdentifierError
from controller.plan.actions import Action, Op
from controller.plan.resources import Column, ResourceKind, TableResource
from controller.plan.rules.hive import is_widening

TABLE_INFO = (
    "Catalog: spark_catalog\nDatabase: hx_exp\nTable: t1\nOwner: root\nCreated Time: Thu Nov 26 18:28:41 UTC 2026\n"
    "Last Access: UNKNOWN\nCreated By: Spark 3.5.9\nType: MANAGED\nProvider: hive\n"
    "Table Properties: [pipectl.release=r1, transient_lastDdlTime=1795717721, x.y=a b]\n"
    "Location: file:/work/main/.stack/warehouse/hx_exp.db/t1\n"
    "Serde Library: org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe\n"
    "InputFormat: org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat\n"
    "OutputFormat: org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat\n"
    "Storage Properties: [serialization.format=1]\nPartition Provider: Catalog\nPartition Columns: [`dt`, `hour`]\n"
    "Schema: root\n |-- host: string (nullable = true)\n |-- dt: string (nullable = true)\n\n"
)


def test_parse_table_info_hive_parquet() -> None:
    info = parse_table_info(TABLE_INFO)
    assert info.type == "MANAGED"
    assert info.format == "parquet"
    assert info.location == "file:/work/main/.stack/warehouse/hx_exp.db/t1"
    assert info.partition_columns == ["dt", "hour"]
    assert info.properties == {"pipectl.release": "r1", "transient_lastDdlTime": "1795717721", "x.y": "a b"}


def test_parse_table_info_formats() -> None:
    orc = TABLE_INFO.replace("parquet.serde.ParquetHiveSerDe", "orc.OrcSerde")
    orc = orc.replace("parquet.MapredParquetInputFormat", "orc.OrcInputFormat")
    assert parse_table_info(orc).format == "orc"
    text = TABLE_INFO.replace(
        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe", "x.LazySimpleSerDe"
    )
    text = text.replace("org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat", "x.TextInputFormat")
    assert parse_table_info(text).format == "textfile"
    datasource = TABLE_INFO.replace("Provider: hive", "Provider: parquet")
    assert parse_table_info(datasource).format == "spark:parquet"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[]", {}),
        ("[a=1]", {"a": "1"}),
        ("[a=1, b.c=x=y, d=]", {"a": "1", "b.c": "x=y", "d": ""}),
        # a value holding ", " whose tail does not read as the next key: uncertain → None
        ("[pipectl.release=r1, transient_lastDdlTime=1, x.y=a, b=c]]", None),
        ("[a=1, free text]", None),
        ("not a list", None),
    ],
)
def test_parse_properties(text: str, expected: dict[str, str] | None) -> None:
    assert parse_properties(text) == expected


def _presto_view_text(sql: str, schema: str = "default") -> str:
    definition = {"originalSql": sql, "catalog": "hive", "schema": schema, "columns": [], "owner": "pipectl"}
    return "/* Presto View: " + base64.b64encode(json.dumps(definition).encode()).decode() + " */"


def test_parse_presto_view_plain_and_stitched() -> None:
    plain = 'SELECT\n  "host"\n, "dt"\nFROM\n  hive.db.m "pipectl_all"\n'
    v = parse_presto_view(_presto_view_text(plain))
    assert v is not None
    assert (v.segments, v.columns, v.all_columns) == ([("db.m", None)], ["host", "dt"], True)

    stitched = (
        'SELECT\n  "host"\nFROM\n  hive.db.a\nWHERE ("window_start" < TIMESTAMP \'2026-11-26 18:00:00\')\n'
        'UNION ALL SELECT\n  "host"\nFROM\n  hive.db.b\n'
        "WHERE ((\"window_start\" >= TIMESTAMP '2026-11-26 18:00:00') AND "
        "(\"window_start\" < TIMESTAMP '2026-11-26 19:00:00'))\n"
        'UNION ALL SELECT\n  "host"\nFROM\n  hive.db.c\nWHERE ("window_start" >= TIMESTAMP \'2026-11-26 19:00:00\')\n'
    )
    v = parse_presto_view(_presto_view_text(stitched))
    assert v is not None
    assert v.segments == [("db.a", None), ("db.b", "2026-11-26 18:00:00"), ("db.c", "2026-11-26 19:00:00")]
    assert (v.columns, v.all_columns, v.time_column) == (["host"], False, "window_start")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT *\nFROM\n  db.t\n",  # goes stale in Presto as soon as the table gains a column
        "SELECT host FROM db.t WHERE host = 'x'",
        "SELECT host FROM db.a JOIN db.b ON a.x = b.x",
        "SELECT host FROM db.a UNION SELECT host FROM db.b",
        "SELECT upper(host) FROM db.t",
        # stretches that leave a gap are not something pipectl wrote
        "SELECT host FROM db.a WHERE ts < TIMESTAMP '2026-01-01 00:00:00' "
        "UNION ALL SELECT host FROM db.b WHERE ts >= TIMESTAMP '2026-01-02 00:00:00'",
        "not sql at all (",
    ],
)
def test_parse_view_sql_rejects_foreign_views(sql: str) -> None:
    assert parse_view_sql(sql) is None


def test_parse_presto_view_ignores_spark_views() -> None:
    assert parse_presto_view("SELECT * FROM hx_exp.t1") is None


def test_unqualified_view_table_uses_the_view_schema() -> None:
    v = parse_presto_view(_presto_view_text('SELECT "host" FROM m', schema="db"))
    assert v is not None and v.segments == [("db.m", None)]


def _adapter() -> HiveAdapter:
    return HiveAdapter("127.0.0.1", presto=PrestoClient("127.0.0.1"))


def test_view_query_round_trips_through_the_parser() -> None:
    segments: list[tuple[str, str | None]] = [("db.a", None), ("db.b", "2026-11-26 18:00:00")]
    adapter = _adapter()
    # what observe would have learned: Hive tables (so no backend is asked which catalog holds them)
    adapter._iceberg.update({("db", "a"): False, ("db", "b"): False})
    sql = adapter._view_query(segments, ["host", "n"], True, "window_start")
    assert f'"{ALL_COLUMNS_ALIAS}"' in sql and "SELECT *" not in sql
    v = parse_view_sql(sql)
    assert v is not None
    assert (v.segments, v.columns, v.all_columns, v.time_column) == (
        segments,
        ["host", "n"],
        True,
        "window_start",
    )


def test_view_query_rejects_bad_segment_start() -> None:
    with pytest.raises(PermanentBackendError):
        _adapter()._view_query(
            [("db.a", None), ("db.b", "2026-11-26'; DROP")], ["host"], False, "window_start"
        )


def _table(**kw: object) -> TableResource:
    base: dict[str, object] = {
        "name": "db.metrics",
        "columns": [Column(name="host", type="string"), Column(name="code", type="VARCHAR(8)")],
        "partition_columns": [Column(name="dt", type="string")],
        "properties": {"pipectl.release": "r'1", "k\\": "v"},
    }
    base.update(kw)
    return TableResource.model_validate(base)


def test_create_table_sql_is_hive_ddl_with_quoted_parts() -> None:
    sql = create_table_sql(_table())
    assert sql == (
        "CREATE TABLE `db`.`metrics` (`host` string, `code` varchar(8)) PARTITIONED BY (`dt` string) "
        "STORED AS PARQUET TBLPROPERTIES ('k\\\\'='v', 'pipectl.release'='r\\'1')"
    )


def test_create_table_sql_refuses_what_could_carry_sql() -> None:
    with pytest.raises(IdentifierError):
        create_table_sql(_table(name="db.metrics; DROP TABLE x"))
    with pytest.raises(IdentifierError):
        create_table_sql(_table(columns=[Column(name="host", type="string) ; DROP TABLE x; --")]))
    with pytest.raises(IdentifierError):
        create_table_sql(_table(columns=[Column(name="a`b", type="string")]))
    with pytest.raises(PermanentBackendError):
        create_table_sql(_table(format="json"))


def test_apply_refuses_a_refused_action() -> None:
    action = Action(op=Op.REFUSE, kind=ResourceKind.TABLE, name="db.t", reason="refused: column drop")
    with pytest.raises(PermanentBackendError, match="refused"):
        _adapter().apply(action)


@pytest.mark.parametrize(
    ("old", "new", "widening"),
    [
        ("int", "bigint", True),
        ("smallint", "int", True),
        ("tinyint", "bigint", True),
        ("float", "double", True),
        ("int", "double", True),
        ("varchar(8)", "string", True),
        ("varchar(8)", "varchar(16)", True),
        ("char(3)", "string", True),
        ("decimal(10,2)", "decimal(12,2)", True),
        ("int", "decimal(12,2)", True),
        ("bigint", "int", False),
        ("double", "float", False),
        ("string", "varchar(8)", False),
        ("decimal(10,2)", "decimal(12,1)", False),
        ("decimal(10,2)", "decimal(10,3)", False),
        ("bigint", "double", False),
        ("string", "int", False),
        ("int", "int", False),
    ],
)
def test_is_widening(old: str, new: str, widening: bool) -> None:
    assert is_widening(old, new) is widening


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_thrift_server_is_a_transient_error_after_retries() -> None:
    from controller.model.errors import TransientBackendError

    adapter = HiveAdapter("127.0.0.1", _closed_port(), timeout=2)
    with pytest.raises(TransientBackendError, match="unreachable"):
        adapter.observe(ResourceKind.DATABASE, ["db"])
    assert adapter.stats.calls["show_databases"] == 4  # retried with backoff, then given up


def test_unreachable_presto_is_a_transient_error() -> None:
    from controller.model.errors import TransientBackendError

    client = PrestoClient("127.0.0.1", _closed_port(), timeout=2)
    with pytest.raises(TransientBackendError, match="cannot reach"):
        client.query("SELECT 1")
    assert client.stats.calls["query"] == 4


def test_parse_presto_view_is_parsed_once_per_view_text(monkeypatch: pytest.MonkeyPatch) -> None:
    from controller.adapters import hive_parse

    text = _presto_view_text('SELECT "host" FROM hive.db.cached "pipectl_all"')
    parsed: list[str] = []
    real = hive_parse.parse_view_sql
    monkeypatch.setattr(hive_parse, "parse_view_sql", lambda sql, **kw: parsed.append(sql) or real(sql, **kw))
    first = parse_presto_view(text)
    assert first is not None and parse_presto_view(text) is first  # every pass reads the view again
    other = parse_presto_view(_presto_view_text('SELECT "host" FROM hive.db.other "pipectl_all"'))
    assert other is not None and other.segments == [("db.other", None)]
    assert len(parsed) == 2  # a new text is parsed
