"""The metastore writes its notification log (the snapshot's watch, ``adapters/hive_metastore.
NotificationCursor``): the listener's jar is a group of its own, resolved without its dependencies
(its classes need only the metastore's, which pyspark ships), and the metastore's configuration
names it as a transactional listener. Rendered offline; the live check is
``tests/integration/test_batched_observe.py``."""

from __future__ import annotations

from controller.devstack import install


def test_the_listener_is_one_jar_without_its_dependencies() -> None:
    groups = {g.name: g for g in install.stack_jar_groups("3.5.7")}
    listener = groups["metastore-listener"]
    assert listener.coords == ("org.apache.hive.hcatalog:hive-hcatalog-server-extensions:2.3.9",)
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
