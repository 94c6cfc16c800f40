"""The SQL the Hive adapter sends for Iceberg tables and how it reads them back
(controller.adapters.hive_iceberg), offline."""

from __future__ import annotations

import base64
import json

from controller.adapters import hive_iceberg as ice
from controller.adapters.hive_parse import TableInfo
from controller.plan.actions import FieldChange, Op
from controller.plan.resources import Column, ResourceKind, TableResource, ViewResource

DESCRIBE = [
    ("window_start", "timestamp_ntz", None),
    ("host", "string", None),
    ("n", "bigint", None),
    ("", "", ""),
    ("# Partitioning", "", ""),
    ("Part 0", "days(window_start)", ""),
    ("Part 1", "bucket(16, host)", ""),
    ("", "", ""),
    ("# Metadata Columns", "", ""),
    ("_spec_id", "int", ""),
    ("_file", "string", ""),
    ("", "", ""),
    ("# Detailed Table Information", "", ""),
    ("Name", "iceberg.db.t", ""),
    ("Provider", "iceberg", ""),
]


def _table(cols: list[tuple[str, str]], **kw: object) -> TableResource:
    return TableResource.model_validate(
        {"name": "db.t", "format": "iceberg", "columns": [{"name": n, "type": t} for n, t in cols], **kw}
    )


def test_create_sql_uses_the_iceberg_catalog_hidden_partitions_and_timestamp_ntz() -> None:
    t = _table(
        [("window_start", "timestamp"), ("host", "string")],
        partitioning=["days(window_start)", "bucket(16, host)", "host"],
        properties={"pipectl.release": "r", "format-version": "2"},
    )
    assert ice.create_sql(t) == (
        "CREATE TABLE `iceberg`.`db`.`t` (`window_start` timestamp_ntz, `host` string) USING iceberg "
        "PARTITIONED BY (days(`window_start`), bucket(16, `host`), `host`) "
        "TBLPROPERTIES ('format-version'='2', 'pipectl.release'='r')"
    )


def test_observed_table_from_describe_and_properties() -> None:
    t = ice.table_resource(
        "db",
        "t",
        DESCRIBE,
        {"pipectl.release": "r", "pipectl.version": "1.0.0", "format": "iceberg/parquet"},
        "file:/w/db.db/t",
    )
    assert t.format == "iceberg"
    assert t.columns == [
        Column(name="window_start", type="timestamp"),
        Column(name="host", type="string"),
        Column(name="n", type="bigint"),
    ]
    assert t.partitioning == ["days(window_start)", "bucket(16, host)"]
    assert t.partition_columns == []
    assert t.owner is not None and t.owner.release == "r" and t.owner.version == "1.0.0"
    assert ice.is_iceberg({"table_type": "ICEBERG"}) and not ice.is_iceberg({}) and not ice.is_iceberg(None)


def test_update_statements_rename_widen_drop_add_and_properties() -> None:
    live = _table(
        [("host", "string"), ("n", "int"), ("v", "float"), ("old", "string")], properties={"k": "1"}
    )
    desired = _table(
        [("hostname", "string"), ("n", "bigint"), ("v", "double"), ("region", "string")],
        properties={"k": "2"},
    )
    changes = [
        FieldChange(field="columns.host.name", old="host", new="hostname"),
        FieldChange(field="columns.n.type", old="int", new="bigint"),
        FieldChange(field="columns.v.type", old="float", new="double"),
        FieldChange(field="columns.old", old="string", new=None),
        FieldChange(field="columns.region", old=None, new="string"),
        FieldChange(field="properties.k", old="1", new="2"),
    ]
    steps = ice.update_statements(desired, live, changes)
    t = "ALTER TABLE `iceberg`.`db`.`t`"
    assert [s for s, _, _ in steps] == [
        f"{t} RENAME COLUMN `host` TO `hostname`",
        f"{t} ALTER COLUMN `n` TYPE bigint",
        f"{t} ALTER COLUMN `v` TYPE double",
        f"{t} DROP COLUMN `old`",
        f"{t} ADD COLUMNS (`region` string)",
        f"{t} SET TBLPROPERTIES ('k'='2')",
    ]
    assert [m for _, _, m in steps][:2] == ["renamed host → hostname", "widened n int → bigint"]


def test_update_statements_skip_what_is_already_live() -> None:
    live = _table([("hostname", "string"), ("n", "bigint"), ("region", "string")], properties={"k": "2"})
    changes = [
        FieldChange(field="columns.host.name", old="host", new="hostname"),
        FieldChange(field="columns.n.type", old="int", new="bigint"),
        FieldChange(field="columns.old", old="string", new=None),
        FieldChange(field="columns.region", old=None, new="string"),
        FieldChange(field="properties.k", old="1", new="2"),
    ]
    assert ice.update_statements(live, live, changes) == []


def _presto_view(sql: str, columns: list[tuple[str, str]], schema: str = "db") -> TableInfo:
    definition = {
        "originalSql": sql,
        "catalog": "hive",
        "schema": schema,
        "columns": [{"name": n, "type": t} for n, t in columns],
    }
    text = f"/* Presto View: {base64.b64encode(json.dumps(definition).encode()).decode()} */"
    return TableInfo(
        type="VIEW",
        provider="hive",
        location=None,
        serde="",
        input_format="",
        partition_columns=[],
        properties={},
        view_text=text,
    )


def test_stale_all_column_views_over_the_table_are_repaired() -> None:
    extended = {
        # all columns of db.t, stored before n was widened: stale
        ("db", "v_all"): _presto_view(
            "SELECT host, n FROM iceberg.db.t pipectl_all", [("host", "varchar"), ("n", "integer")]
        ),
        # up to date with the table: left alone
        ("db", "v_ok"): _presto_view(
            "SELECT host, n FROM iceberg.db.t pipectl_all", [("host", "varchar"), ("n", "bigint")]
        ),
        # another table's view: left alone
        ("db", "v_other"): _presto_view(
            "SELECT host, n FROM hive.db.u pipectl_all", [("host", "varchar"), ("n", "integer")]
        ),
        ("db", "t"): TableInfo(
            type="MANAGED",
            provider="hive",
            location=None,
            serde="",
            input_format="",
            partition_columns=[],
            properties={},
            view_text=None,
        ),
    }
    now = [Column(name="host", type="string"), Column(name="n", type="bigint")]
    fixes = ice.view_repairs(extended, "db", "t", now)
    assert [(a.op, a.kind, a.name) for a in fixes] == [(Op.REPLACE, ResourceKind.VIEW, "db.v_all")]
    view = fixes[0].desired
    assert (
        isinstance(view, ViewResource)
        and view.target == "db.t"
        and view.columns == []
        and view.segments == []
    )
    # a rename: the stored name is gone from the table
    renamed = [Column(name="hostname", type="string"), Column(name="n", type="bigint")]
    assert [a.name for a in ice.view_repairs(extended, "db", "t", renamed)] == ["db.v_all", "db.v_ok"]


def test_which_changes_break_views() -> None:
    assert ice.breaks_views([FieldChange(field="columns.a.name", old="a", new="b")])
    assert ice.breaks_views([FieldChange(field="columns.n.type", old="int", new="bigint")])
    assert ice.breaks_views([FieldChange(field="columns.a", old="string", new=None)])
    assert not ice.breaks_views(
        [
            FieldChange(field="columns.z", old=None, new="string"),
            FieldChange(field="properties.k", old="1", new="2"),
        ]
    )
    assert ice.presto_type("int") == "integer" and ice.presto_type("timestamp") == "timestamp"
