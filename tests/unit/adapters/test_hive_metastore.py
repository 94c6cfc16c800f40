"""The metastore path of the Hive adapter without a server (issue #17): metastore ``Table`` objects
(built with the bindings' own structs) become the same resources the SQL path builds from Spark's
``SHOW TABLE EXTENDED`` text, and the client's failures become the right backend errors.

The live comparison of both paths is ``tests/integration/test_batched_observe.py``.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from pymetastore.hive_metastore import ttypes
from thrift.Thrift import TApplicationException
from thrift.transport.TTransport import TTransportException

from controller.adapters.base import CallStats
from controller.adapters.hive import HiveAdapter, parse_table_info, table_resource
from controller.adapters.hive_metastore import (
    MetastoreClient,
    database_state,
    spark_properties,
    table_columns,
    table_info,
)
from controller.adapters.presto import PrestoClient
from controller.model.errors import PermanentBackendError, TransientBackendError
from controller.model.identifiers import IdentifierError
from controller.plan.resources import Column, DatabaseResource, ResourceKind, TableResource, ViewResource

PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
LOCATION = "file:/work/main/.stack/warehouse/hx_exp.db/t1"

# Spark 3.5.9's SHOW TABLE EXTENDED of the table T1 below (as in test_hive_offline).
T1_TEXT = (
    "Catalog: spark_catalog\nDatabase: hx_exp\nTable: t1\nOwner: root\nType: MANAGED\nProvider: hive\n"
    "Table Properties: [pipectl.release=r1, transient_lastDdlTime=1795717721, x.y=a b]\n"
    f"Location: {LOCATION}\nSerde Library: {PARQUET_SERDE}\nInputFormat: {PARQUET_INPUT}\n"
    "Partition Provider: Catalog\nPartition Columns: [`dt`, `hour`]\n"
)


def _fields(*cols: tuple[str, str]) -> list[Any]:
    return [ttypes.FieldSchema(name=n, type=t, comment=None) for n, t in cols]


def _table(
    name: str,
    cols: list[tuple[str, str]],
    *,
    parts: list[tuple[str, str]] | None = None,
    params: dict[str, str] | None = None,
    db: str = "hx_exp",
    serde: str = PARQUET_SERDE,
    serde_params: dict[str, str] | None = None,
) -> Any:
    sd = ttypes.StorageDescriptor(
        cols=_fields(*cols),
        location=f"file:/work/main/.stack/warehouse/{db}.db/{name}",
        inputFormat=PARQUET_INPUT,
        serdeInfo=ttypes.SerDeInfo(serializationLib=serde, parameters=serde_params or {}),
    )
    return ttypes.Table(
        tableName=name,
        dbName=db,
        sd=sd,
        partitionKeys=_fields(*(parts or [])),
        parameters=params or {},
        tableType="MANAGED_TABLE",
    )


def _view(name: str, sql: str, db: str = "hx_exp") -> Any:
    definition = {"originalSql": sql, "catalog": "hive", "schema": db, "columns": [], "owner": "pipectl"}
    text = "/* Presto View: " + base64.b64encode(json.dumps(definition).encode()).decode() + " */"
    return ttypes.Table(
        tableName=name,
        dbName=db,
        sd=ttypes.StorageDescriptor(cols=_fields(("host", "string")), location=None),
        partitionKeys=[],
        parameters={"comment": "Presto View", "presto_view": "true", "transient_lastDdlTime": "1"},
        viewOriginalText=text,
        viewExpandedText="/* Presto View */",
        tableType="VIRTUAL_VIEW",
    )


T1 = _table(
    "t1",
    [("host", "string"), ("code", "varchar(8)"), ("amount", "decimal(10,2)"), ("tags", "struct<a:int,b:string>")],
    parts=[("dt", "string"), ("hour", "int")],
    params={
        "pipectl.release": "r1",
        "transient_lastDdlTime": "1795717721",
        "x.y": "a b",
        # hidden by Spark: statistics, its own schema copy, EXTERNAL, comment
        "numFiles": "3",
        "totalSize": "1024",
        "COLUMN_STATS_ACCURATE": '{"BASIC_STATS":"true"}',
        "spark.sql.sources.schema": '{"type":"struct","fields":[]}',
        "spark.sql.create.version": "3.5.9",
        "comment": "a table",
    },
)


def test_table_object_gives_what_show_table_extended_says() -> None:
    info, parsed = table_info(T1), parse_table_info(T1_TEXT)
    assert (info.type, info.format, info.location) == (parsed.type, parsed.format, parsed.location)
    assert info.partition_columns == parsed.partition_columns == ["dt", "hour"]
    assert info.properties == parsed.properties
    assert info.view_text is None


def test_equal_columns_are_one_object_across_tables() -> None:
    assert all(a is b for a, b in zip(table_columns(T1), table_columns(T1), strict=True))


def test_table_object_builds_the_sql_paths_resource() -> None:
    columns = table_columns(T1)
    assert columns == [  # GetColumns' order: data columns, then partition columns; types normalized
        Column(name="host", type="string"),
        Column(name="code", type="varchar(8)"),
        Column(name="amount", type="decimal(10,2)"),
        Column(name="tags", type="struct<a:int,b:string>"),
        Column(name="dt", type="string"),
        Column(name="hour", type="int"),
    ]
    info = table_info(T1)
    assert info.properties is not None
    got = table_resource("hx_exp", "t1", info, info.properties, columns)
    parsed = parse_table_info(T1_TEXT)
    assert parsed.properties is not None
    assert got == table_resource("hx_exp", "t1", parsed, parsed.properties, columns)
    assert got.partition_columns == [Column(name="dt", type="string"), Column(name="hour", type="int")]
    assert got.owner is not None and got.owner.release == "r1"
    assert (got.format, got.location) == ("parquet", LOCATION)


def test_a_property_value_with_comma_and_equals_is_read_exactly() -> None:
    # the SQL path misreads "b" here as a key of its own (issue #17); the metastore gives the map
    params = {"a": "x, b=y", "c": "z"}
    assert spark_properties(params) == params
    assert table_info(_table("t", [("k", "string")], params=params)).properties == params


def test_unpartitioned_table_and_iceberg_marker() -> None:
    t = _table("ice", [("k", "bigint")], params={"table_type": "ICEBERG", "metadata_location": "file:/m.json"})
    info = table_info(t)
    assert info.partition_columns == [] and info.properties == {
        "table_type": "ICEBERG",
        "metadata_location": "file:/m.json",
    }


def test_view_object_gives_its_original_text() -> None:
    v = _view("v", 'SELECT "host" FROM hive.hx_exp.t1')
    info = table_info(v)
    assert info.type == "VIEW"
    assert info.view_text == v.viewOriginalText


def test_datasource_table_reads_columns_with_get_columns_and_location_from_path() -> None:
    ds = _table(
        "ds",
        [("col", "array<string>")],  # Spark's placeholder schema: the real one is in its properties
        params={
            "spark.sql.sources.provider": "json",
            "spark.sql.sources.schema": "{}",
            "spark.sql.sources.schema.numPartCols": "1",
            "spark.sql.sources.schema.partCol.0": "dt",
            "transient_lastDdlTime": "1",
            "team": "it",
        },
        serde="org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe",
        serde_params={"path": "file:/data/ds"},
    )
    asked: list[set[tuple[str, str]]] = []

    def get_columns(keys: set[tuple[str, str]]) -> dict[tuple[str, str], list[Column]]:
        asked.append(keys)
        return {("hx_exp", "ds"): [Column(name="k", type="string")], ("hx_exp", "other"): []}

    infos, columns = database_state([T1, ds, _view("v", 'SELECT "host" FROM hive.hx_exp.t1')], get_columns)
    assert asked == [{("hx_exp", "ds")}]  # one call, for the datasource tables only
    assert columns == {("hx_exp", "t1"): table_columns(T1), ("hx_exp", "ds"): [Column(name="k", type="string")]}
    assert set(infos) == {("hx_exp", "t1"), ("hx_exp", "ds"), ("hx_exp", "v")}
    ds_info = infos[("hx_exp", "ds")]
    assert (ds_info.format, ds_info.location) == ("spark:json", "file:/data/ds")
    # as Spark restores a datasource table: partition columns from its properties, no DDL time
    assert (ds_info.partition_columns, ds_info.properties) == (["dt"], {"team": "it"})
    assert database_state([T1], get_columns)[1] == {("hx_exp", "t1"): table_columns(T1)}
    assert len(asked) == 1  # no datasource table, no call


class _Metastore(MetastoreClient):
    """The adapter's own metastore interface answering from objects (no server)."""

    def __init__(self, tables: list[Any]) -> None:
        super().__init__("thrift://127.0.0.1:9", CallStats())
        self.objects = tables

    def databases(self) -> list[str]:
        return ["default", "hx_exp"]

    def tables(self, db: str, names: Sequence[str] | None = None) -> list[Any]:
        return [t for t in self.objects if t.dbName == db and (names is None or t.tableName in names)]


def test_observe_scope_builds_tables_and_views_from_the_metastore_without_sql() -> None:
    adapter = HiveAdapter("127.0.0.1", _closed_port(), presto=PrestoClient("127.0.0.1"), timeout=1)
    view = _view("t1_v", 'SELECT "host", "code", "amount", "tags", "dt", "hour" FROM hive.hx_exp.t1 "pipectl_all"')
    adapter.metastore = _Metastore([T1, view])
    assert adapter.observe_scope("databases") == {
        (ResourceKind.DATABASE, "default"): DatabaseResource(name="default"),
        (ResourceKind.DATABASE, "hx_exp"): DatabaseResource(name="hx_exp"),
    }
    got = adapter.observe_scope("db:hx_exp")
    table = got[(ResourceKind.TABLE, "hx_exp.t1")]
    assert isinstance(table, TableResource) and table.columns[0] == Column(name="host", type="string")
    # an all-column view whose listed columns still match its table reads as columns: []
    assert got[(ResourceKind.VIEW, "hx_exp.t1_v")] == ViewResource(name="hx_exp.t1_v", target="hx_exp.t1")
    assert set(got) == {(ResourceKind.TABLE, "hx_exp.t1"), (ResourceKind.VIEW, "hx_exp.t1_v")}
    assert adapter.stats.calls == {}  # nothing went to the (closed) Thrift Server
    assert adapter._iceberg[("hx_exp", "t1")] is False


def test_a_listed_scope_reads_only_the_listed_objects() -> None:
    adapter = HiveAdapter("127.0.0.1", _closed_port(), presto=PrestoClient("127.0.0.1"), timeout=1)
    adapter.metastore = _Metastore([T1, _view("t1_v", "SELECT 1")])
    assert set(adapter.observe_scope_with("db:hx_exp", ["t1"])) == {(ResourceKind.TABLE, "hx_exp.t1")}
    assert adapter.observe_scope_with("db:hx_exp", []) == {}
    assert HiveAdapter("127.0.0.1", _closed_port(), timeout=1).list_scopes(["db:a"]) is None  # SQL path


class _Listing(MetastoreClient):
    """Answers ``get_table_meta`` from (db, table) pairs, recording each pattern asked."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__("thrift://127.0.0.1:9", CallStats())
        self.pairs, self.patterns = pairs, []

    def _call(self, method: str, *args: Any) -> Any:
        assert method == "get_table_meta" and args[1:] == ("*", [])
        self.patterns.append(args[0])
        wanted = set(args[0].split("|"))
        return [SimpleNamespace(dbName=d, tableName=t) for d, t in self.pairs if d in wanted]


def test_table_names_lists_databases_in_chunks_with_one_pattern_each() -> None:
    client = _Listing([("a", "x"), ("a", "y"), ("c", "z"), ("other", "w")])
    assert client.table_names(["a", "b", "c"], chunk=2) == {"a": ["x", "y"], "b": [], "c": ["z"]}
    assert client.patterns == ["a|b", "c"]
    adapter = HiveAdapter("127.0.0.1", _closed_port(), timeout=1)
    adapter.metastore = client
    assert adapter.list_scopes(["databases", "db:c", "db:a"]) == {"db:c": ["z"], "db:a": ["x", "y"]}
    with pytest.raises(IdentifierError):
        adapter.list_scopes(["db:a|b"])  # never a pattern of the caller's making


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_metastore_is_transient_and_counted() -> None:
    client = MetastoreClient(f"thrift://127.0.0.1:{_closed_port()}", CallStats(), timeout=2)
    with pytest.raises(TransientBackendError, match="unreachable"):
        client.tables("db")
    assert client.stats.calls == {"hms.get_all_tables": 1, "hms.connect": 1}


def test_metastore_errors_are_sorted_transient_or_permanent() -> None:
    client = MetastoreClient("thrift://127.0.0.1:9083", CallStats())
    timeout = client._wrap(TTransportException(TTransportException.TIMED_OUT, "timed out"), "get_all_tables")
    assert isinstance(timeout, TransientBackendError)
    db_down = client._wrap(ttypes.MetaException(message="java.net.ConnectException: Connection refused"), "x")
    assert isinstance(db_down, TransientBackendError)
    undeclared = client._wrap(TApplicationException(TApplicationException.MISSING_RESULT, "no result"), "x")
    assert isinstance(undeclared, TransientBackendError)
    bad = client._wrap(ttypes.MetaException(message="bad pattern"), "get_all_tables")
    assert isinstance(bad, PermanentBackendError) and "bad pattern" in str(bad)
    assert isinstance(client._wrap(TApplicationException(TApplicationException.UNKNOWN_METHOD), "x"), PermanentBackendError)


def test_adapter_takes_the_metastore_uri_and_refuses_a_bad_one() -> None:
    adapter = HiveAdapter("127.0.0.1", metastore_uri="thrift://127.0.0.1:9083")
    assert adapter.metastore is not None
    assert (adapter.metastore.host, adapter.metastore.port) == ("127.0.0.1", 9083)
    assert adapter.metastore.stats is adapter.stats  # its calls count with the adapter's
    assert HiveAdapter("127.0.0.1").metastore is None
    with pytest.raises(ValueError, match="thrift://host:port"):
        HiveAdapter("127.0.0.1", metastore_uri="http://127.0.0.1:9083")
