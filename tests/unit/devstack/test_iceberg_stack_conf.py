"""The local stack's Iceberg wiring, rendered offline: the Spark runtime jar group, the `iceberg`
Spark catalog (driver classpath, Hive catalog on the shared metastore, lock-free commits) and
Presto's `iceberg` catalog."""

from __future__ import annotations

from pathlib import Path

from controller.devstack import install
from controller.devstack.component import Context
from controller.devstack.components import write_spark_conf
from controller.devstack.layout import HOST, Layout, port


def _spark_defaults(tmp_path: Path) -> dict[str, str]:
    jar = tmp_path / "iceberg-spark-runtime-3.5_2.12-1.9.2.jar"
    ctx = Context(layout=Layout(tmp_path), java_home=Path("/usr"), spark_home=tmp_path,
                  spark_version="3.5.9", python="python3", pg_bin=None, spark_classpath=[jar])
    write_spark_conf(ctx)
    out = {}
    for line in (tmp_path / ".stack" / "spark-conf" / "spark-defaults.conf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out[key] = value.strip()
    return out


def test_iceberg_runtime_is_a_jar_group_of_its_own() -> None:
    groups = {g.name: g for g in install.stack_jar_groups("3.5.7")}
    assert groups["iceberg"].coords == ("org.apache.iceberg:iceberg-spark-runtime-3.5_2.12:1.9.2",)
    assert groups["iceberg"].include == ("iceberg-spark-runtime-3.5_2.12",)
    assert "iceberg" in install.PRESTO_PLUGINS


def test_spark_defaults_declare_the_iceberg_catalog_on_the_stack_metastore(tmp_path: Path) -> None:
    conf = _spark_defaults(tmp_path)
    assert conf["spark.driver.extraClassPath"] == str(tmp_path / "iceberg-spark-runtime-3.5_2.12-1.9.2.jar")
    assert conf["spark.sql.catalog.iceberg"] == "org.apache.iceberg.spark.SparkCatalog"
    assert conf["spark.sql.catalog.iceberg.type"] == "hive"
    assert conf["spark.sql.catalog.iceberg.uri"] == f"thrift://{HOST}:{port('metastore')}"
    assert conf["spark.sql.catalog.iceberg.warehouse"] == conf["spark.sql.warehouse.dir"]
    assert conf["spark.sql.catalog.iceberg.hadoop.iceberg.engine.hive.lock-enabled"] == "false"
    assert conf["spark.sql.catalog.iceberg.cache-enabled"] == "false"
    # the runtime is not shipped through spark.jars (the Thrift Server's statement threads miss it)
    assert "iceberg" not in conf["spark.jars"]


def test_presto_iceberg_catalog() -> None:
    props = dict(
        line.split("=", 1)
        for line in install.render("presto-iceberg.properties.tmpl", host=HOST, metastore_port=9083).splitlines()
        if line.strip()
    )
    assert props == {"connector.name": "iceberg", "iceberg.catalog.type": "hive",
                     "hive.metastore.uri": f"thrift://{HOST}:9083", "iceberg.file-format": "PARQUET"}
