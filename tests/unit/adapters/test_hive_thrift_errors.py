"""How the Thrift Server's statement errors are classed: a server going down is transient (the
pass reports BackendUnavailable and retries), a statement the server refuses is permanent."""

from __future__ import annotations

import threading

import pytest

from controller.adapters.hive_thrift import HiveThriftConnection
from controller.model.errors import PermanentBackendError, TransientBackendError

STOPPING = (
    "Error running query: java.lang.IllegalStateException: Cannot call methods on a stopped "
    "SparkContext.\nThis stopped SparkContext was created at:\n\n"
    "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2.main(HiveThriftServer2.scala)"
)


def _conn() -> HiveThriftConnection:
    c = HiveThriftConnection.__new__(HiveThriftConnection)
    c._conn = None
    c._lock = threading.RLock()
    return c


@pytest.mark.parametrize(
    "message",
    [
        STOPPING,
        "Job 3 cancelled because SparkContext was shut down",
        "org.apache.thrift.transport.TTransportException: java.net.SocketTimeoutException: Read timed out",
    ],
)
def test_a_server_going_down_is_transient(message: str) -> None:
    err = _conn()._wrap(RuntimeError(message), "CREATE TABLE `db`.`t` (`k` string)")
    assert isinstance(err, TransientBackendError)
    assert "CREATE TABLE" in str(err)


def test_a_refused_statement_is_permanent() -> None:
    message = "[SCHEMA_NOT_FOUND] The schema `nope` cannot be found."
    err = _conn()._wrap(RuntimeError(message), "DROP SCHEMA `nope`")
    assert isinstance(err, PermanentBackendError)
