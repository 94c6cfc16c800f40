"""The stack's metastore checks an expected table parameter in the same transaction as its
``alter_table`` (HIVE-26882, in the hive-metastore 2.3.10 the stack runs: ``HMS_SERVER`` in
``controller/devstack/install.py``). Iceberg's lock-free commits (``lock-enabled=false`` in
``spark-defaults.conf``) send the ``metadata_location`` they started from as that expected value, so
a commit racing another writer's is refused (and retried by Iceberg) instead of silently
replacing it: a maintenance commit and a streaming job's commit to one table cannot lose either.

Shown on the real metastore with its Thrift API: an alter carrying a stale ``metadata_location``
is refused and changes nothing; the current one is applied."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pymetastore.hive_metastore import ThriftHiveMetastore
from pymetastore.hive_metastore.ttypes import EnvironmentContext, MetaException
from thrift.protocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport

from controller.model.identifiers import parse_metastore_uri

pytestmark = pytest.mark.integration


@pytest.fixture
def iceberg_table(hive_conn: Callable[..., Any], unique_name: str) -> Iterator[tuple[str, str]]:
    db = f"it{unique_name}_cas"
    cur = hive_conn().cursor()
    cur.execute(f"CREATE DATABASE `{db}`")
    cur.execute(f"CREATE TABLE iceberg.`{db}`.`ev` (host string, samples int) USING iceberg")
    cur.execute(f"INSERT INTO iceberg.`{db}`.`ev` VALUES ('a', 1)")
    yield db, "ev"
    cur.execute(f"DROP TABLE IF EXISTS iceberg.`{db}`.`ev`")
    cur.execute(f"DROP DATABASE IF EXISTS `{db}` CASCADE")


def test_an_alter_from_a_stale_metadata_location_is_refused_and_changes_nothing(
    iceberg_table: tuple[str, str], stack: dict[str, Any], hive_conn: Callable[..., Any]
) -> None:
    db, name = iceberg_table
    host, port = parse_metastore_uri(str(stack["metastore_uri"]))
    transport = TTransport.TBufferedTransport(TSocket.TSocket(host, port))
    transport.open()
    try:
        hms = ThriftHiveMetastore.Client(TBinaryProtocol.TBinaryProtocol(transport))
        seen = hms.get_table(db, name)
        stale = seen.parameters["metadata_location"]
        hive_conn().cursor().execute(f"INSERT INTO iceberg.`{db}`.`ev` VALUES ('b', 2)")  # another writer
        current = hms.get_table(db, name).parameters["metadata_location"]
        assert current != stale

        seen.parameters["pipectl.probe"] = "from-stale"
        with pytest.raises(MetaException, match="The table has been modified"):
            hms.alter_table_with_environment_context(db, name, seen, EnvironmentContext(
                {"expected_parameter_key": "metadata_location", "expected_parameter_value": stale}))
        after = hms.get_table(db, name).parameters
        assert after["metadata_location"] == current and "pipectl.probe" not in after

        fresh = hms.get_table(db, name)
        fresh.parameters["pipectl.probe"] = "from-current"
        hms.alter_table_with_environment_context(db, name, fresh, EnvironmentContext(
            {"expected_parameter_key": "metadata_location", "expected_parameter_value": current}))
        assert hms.get_table(db, name).parameters["pipectl.probe"] == "from-current"
    finally:
        transport.close()
    cur = hive_conn().cursor()
    cur.execute(f"SELECT count(*) FROM iceberg.`{db}`.`ev`")
    assert cur.fetchall() == [(2,)]  # both writers' rows: the refused alter lost nothing
