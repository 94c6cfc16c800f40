"""The Hive adapter's connection to the Spark Thrift Server (HiveServer2 protocol, pyhive): opening
it, running statements and GetColumns calls on it, and turning what fails into backend errors
(transient ones close the connection, so the adapter's retry opens a new one).

The only module of pipectl that imports ``pyhive.hive`` (see ``.importlinter``).
"""

from __future__ import annotations

import threading
from typing import Any

from pyhive import exc as pyhive_exc
from pyhive import hive
from TCLIService import ttypes
from thrift.Thrift import TException
from thrift.transport import TSocket, TTransport

from controller.adapters.base import CallStats
from controller.adapters.hive_parse import BACKEND
from controller.model.errors import BackendError, PermanentBackendError, TransientBackendError
from controller.model.secret import Secret

# Errors in a statement's message that mean "the service behind the Thrift Server is unavailable".
_TRANSIENT_MARKERS = (
    "TTransportException",
    "Could not connect to meta store",
    "java.net.ConnectException",
    "SocketTimeoutException",
    "Connection refused",
    "Broken pipe",
    # the Thrift Server is shutting down (a restart is under way): its statements fail this way
    "Cannot call methods on a stopped SparkContext",
    "SparkContext was shut down",
)


AUTH_MODES = ("NOSASL", "NONE", "LDAP", "CUSTOM")
"""HiveServer2 authentication pipectl speaks: NOSASL (plain Thrift), NONE (SASL PLAIN, no
password), LDAP and CUSTOM (SASL PLAIN with a user and password). Not KERBEROS (GSSAPI)."""


def check_auth(auth: str, username: str | None, password: Secret | None) -> None:
    """Refuse a combination the connection cannot use (the manifest refuses it first)."""
    if auth not in AUTH_MODES:
        raise ValueError(f"Hive auth {auth!r} is not supported: use {', '.join(AUTH_MODES)}")
    if auth in ("LDAP", "CUSTOM") and (not username or password is None):
        raise ValueError(f"Hive auth {auth} needs a username and a password")
    if auth not in ("LDAP", "CUSTOM") and password is not None:
        raise ValueError(f"Hive auth {auth} takes no password")


class HiveThriftConnection:
    """One lazily opened Thrift Server connection, shared under a lock; every call is counted in
    ``stats``. The adapter (``controller.adapters.hive.HiveAdapter``) sets the attributes below;
    ``password`` is a ``Secret`` (never printed) revealed only to the SASL client."""

    host: str
    port: int
    auth: str
    username: str | None
    password: Secret | None
    timeout: float
    stats: CallStats
    _conn: Any
    _lock: threading.RLock

    def close(self) -> None:
        """Close the connection (if open); the next call opens a new one."""
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except Exception:  # noqa: S110 - closing a broken connection may fail; nothing to do
                    pass
                self._conn = None

    def _connection(self) -> Any:
        if self._conn is None:
            sock = TSocket.TSocket(self.host, self.port)
            sock.setTimeout(int(self.timeout * 1000))
            transport: Any
            if self.auth == "NOSASL":
                transport = TTransport.TBufferedTransport(sock)
            else:
                import thrift_sasl  # SASL PLAIN: NONE (no password), LDAP, CUSTOM

                user = self.username or "pipectl"
                # NONE: SASL PLAIN wants a non-empty placeholder; LDAP/CUSTOM: the real password
                secret = self.password.reveal() if self.password is not None else "x"
                transport = thrift_sasl.TSaslClientTransport(
                    lambda: hive.get_installed_sasl(
                        host=self.host, sasl_auth="PLAIN", service=None, username=user, password=secret
                    ),
                    "PLAIN",
                    sock,
                )
            self.stats.count("connect")
            self._conn = hive.connect(thrift_transport=transport, username=self.username or "pipectl")
        return self._conn

    def _query(self, sql: str, op: str) -> list[tuple[Any, ...]]:
        return self._run(sql, op, fetch=True)

    def _execute(self, sql: str, op: str) -> None:
        self._run(sql, op, fetch=False)

    def _run(self, sql: str, op: str, *, fetch: bool) -> list[tuple[Any, ...]]:
        with self._lock:
            self.stats.count(op)
            try:
                cursor = self._connection().cursor()
                try:
                    cursor.execute(sql)
                    # pyhive raises on fetchall() after DDL: only statements with a result set fetch.
                    rows = [tuple(r) for r in cursor.fetchall()] if fetch else []
                finally:
                    cursor.close()
            except Exception as e:  # the SDK raises thrift, socket and pyhive errors alike
                raise self._wrap(e, sql) from e
        return rows

    def _metadata_columns(
        self, schema_pattern: str, table_pattern: str
    ) -> list[tuple[str, str, str, str, int]]:
        """HiveServer2 GetColumns: (schema, table, column, type name, ordinal position) rows."""
        with self._lock:
            self.stats.count("get_columns")
            try:
                conn = self._connection()
                resp = conn.client.GetColumns(
                    ttypes.TGetColumnsReq(
                        sessionHandle=conn.sessionHandle, schemaName=schema_pattern, tableName=table_pattern
                    )
                )
                _check(resp)
                handle = resp.operationHandle
                rows: list[tuple[str, str, str, str, int]] = []
                try:
                    while True:
                        fetched = conn.client.FetchResults(
                            ttypes.TFetchResultsReq(
                                operationHandle=handle,
                                orientation=ttypes.TFetchOrientation.FETCH_NEXT,
                                maxRows=10000,
                            )
                        )
                        _check(fetched)
                        cols = [_column_values(c) for c in fetched.results.columns]
                        batch = list(zip(cols[1], cols[2], cols[3], cols[5], cols[16], strict=True))
                        rows += [(str(s), str(t), str(c), str(ty), int(p)) for s, t, c, ty, p in batch]
                        if len(batch) < 10000:
                            break
                finally:
                    conn.client.CloseOperation(ttypes.TCloseOperationReq(operationHandle=handle))
            except Exception as e:
                raise self._wrap(e, f"GetColumns({schema_pattern}, {table_pattern})") from e
        return rows

    def _wrap(self, e: Exception, sql: str) -> BackendError:
        head = " ".join(sql.split())[:200]
        if isinstance(e, BackendError):
            return e
        if isinstance(e, TException | OSError) and not isinstance(e, pyhive_exc.Error):
            self.close()  # the connection is unusable; the retry opens a new one
            return TransientBackendError(
                BACKEND, f"Thrift Server unreachable: {type(e).__name__}: {e} ({head})"
            )
        message = _status_message(e)
        if any(marker in message for marker in _TRANSIENT_MARKERS):
            return TransientBackendError(BACKEND, f"{message[:500]} ({head})")
        return PermanentBackendError(BACKEND, f"{message[:800]} ({head})")


def _column_values(col: Any) -> list[Any]:
    for attr in ("stringVal", "i32Val", "i64Val", "i16Val", "byteVal", "boolVal", "doubleVal", "binaryVal"):
        v = getattr(col, attr, None)
        if v is not None:
            return list(v.values)
    return []


def _check(resp: Any) -> None:
    ok = {ttypes.TStatusCode.SUCCESS_STATUS, ttypes.TStatusCode.SUCCESS_WITH_INFO_STATUS}
    if resp.status.statusCode not in ok:
        raise pyhive_exc.OperationalError(resp)


def _status_message(e: Exception) -> str:
    arg = e.args[0] if e.args else None
    status = getattr(arg, "status", None)
    if status is not None and getattr(status, "errorMessage", None):
        return str(status.errorMessage)
    return f"{type(e).__name__}: {e}"
