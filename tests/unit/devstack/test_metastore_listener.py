"""The metastore writes its notification log (the snapshot's watch, ``adapters/hive_metastore.
NotificationCursor``): the listener's jar is a group of its own, resolved without its dependencies
(its classes need only the metastore's, which pyspark ships), and the metastore's configuration
names it as a transactional listener. Rendered offline; the live check is
``tests/integration/test_batched_observe.py``."""

from __future__ import annotations

import os
from pathlib import Path

from controller.devstack import components, install
from controller.devstack.component import Context
from controller.devstack.layout import Layout


def test_the_listener_is_one_jar_without_its_dependencies() -> None:
    groups = {g.name: g for g in install.stack_jar_groups("3.5.7")}
    listener = groups["metastore-listener"]
    assert listener.coords == ("org.apache.hive.hcatalog:hive-hcatalog-server-extensions:2.3.10",)
    assert not listener.transitive and listener.key() != install.JarGroup(
        listener.name, listener.coords).key()  # switching transitivity resolves the group again
    xml = install._dep_xml(listener.coords[0], transitive=False)
    assert "<exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion>" in xml
    assert "exclusion" not in install._dep_xml(listener.coords[0])


def test_the_metastore_configuration_names_the_listener() -> None:
    site = install.render(
        "metastore-hive-site.xml.tmpl", host="h", pg_port=1, pg_password="p", warehouse_uri="file:///w",
        auto_start_classes="",
    )
    assert (
        "<name>hive.metastore.transactional.event.listeners</name>"
        "<value>org.apache.hive.hcatalog.listener.DbNotificationListener</value>"
    ) in site


def test_the_metastore_server_classes_are_hive_2_3_10_with_the_thrift_they_are_built_against() -> None:
    """HIVE-26882 (the expected-value check that makes Iceberg's lock-free commits atomic) is in
    2.3.10; its classes need libthrift 0.14 and the 2.3.10 shims, all ahead of pyspark's 2.3.9."""
    server = {g.name: g for g in install.stack_jar_groups("3.5.7")}["metastore-server"]
    assert not server.transitive
    assert "org.apache.hive:hive-metastore:2.3.10" in server.coords
    assert "org.apache.hive.shims:hive-shims-common:2.3.10" in server.coords
    assert "org.apache.thrift:libthrift:0.14.1" in server.coords


def test_the_metastore_server_jars_come_first_and_the_thrift_server_loads_icebergs_sql_extensions(
    tmp_path: Path,
) -> None:
    server = tmp_path / "hive-metastore-2.3.10.jar"
    ctx = Context(layout=Layout(tmp_path), java_home=Path("/usr"), spark_home=tmp_path, spark_version="3.5.9",
                  python="python3", pg_bin=None, metastore_server_jars=[server])
    argv, _, _ = components.Metastore(ctx).command()
    cp = argv[argv.index("-cp") + 1].split(os.pathsep)
    assert cp.index(str(server)) < cp.index(str(tmp_path / "jars" / "*"))
    assert components.Metastore(ctx).version() == "2.3.10"
    thrift, _, _ = components.Thrift(ctx).command()
    assert f"spark.sql.extensions={components.ICEBERG_EXTENSIONS}" in thrift
