"""A small PrestoDB client (pyhive.presto over HTTP): queries for serving views, gates and tests.

``query`` returns all rows; ``execute`` runs a statement (DDL, INSERT) to completion. Errors are
wrapped in pipectl's tree: connection failures, HTTP 5xx and the server's "insufficient
resources" / "starting up" / metastore errors are transient (retried with backoff), anything else
— a syntax error, an unknown table — is permanent. Every statement counts one call in ``stats``
(a statement is one logical round trip, however many HTTP polls Presto needs to finish it).

Deadlines: ``timeout`` bounds each HTTP request; inside ``controller.adapters._retry.deadline``
(gate queries: ``controller.engine.gating``) the whole statement, retries and polls included, is
bounded too: past it the query is cancelled and ``DeadlineExceeded`` (transient) raised.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import requests
import structlog
from pyhive import exc as pyhive_exc
from pyhive import presto

from controller.adapters._retry import DeadlineExceeded, check_deadline, retrying, time_left
from controller.adapters.base import CallStats
from controller.model.errors import PermanentBackendError, TransientBackendError
from controller.model.secret import Secret

log = structlog.get_logger(__name__)

BACKEND = "presto"
POLL_INTERVAL = 0.05

# Presto error names / types that say "try again later" rather than "this statement is wrong".
_TRANSIENT_ERROR_TYPES = {"INSUFFICIENT_RESOURCES"}
_TRANSIENT_ERROR_NAMES = {
    "SERVER_STARTING_UP",
    "SERVER_SHUTTING_DOWN",
    "NO_NODES_AVAILABLE",
    "HIVE_METASTORE_ERROR",
    "ABANDONED_QUERY",
    "REMOTE_TASK_ERROR",
    "PAGE_TRANSPORT_TIMEOUT",
    "TOO_MANY_REQUESTS_FAILED",
    "CLUSTER_OUT_OF_MEMORY",
}


class PrestoClient:
    """One PrestoDB coordinator; statements run in ``catalog`` as ``username``. With ``https``
    (and optionally a CA bundle ``ca_file``) the coordinator is reached over TLS; a ``password``
    (a ``Secret``: never printed) is sent as HTTP Basic auth, over HTTPS only."""

    def __init__(
        self,
        host: str,
        port: int = 8080,
        catalog: str = "hive",
        username: str = "pipectl",
        *,
        timeout: float = 60.0,
        https: bool = False,
        password: Secret | None = None,
        ca_file: str | None = None,
    ) -> None:
        if password is not None and not https:
            raise ValueError("a Presto password is only sent over HTTPS (set https)")
        self.host = host
        self.port = port
        self.catalog = catalog
        self.username = username
        self.timeout = timeout
        self.https = https
        self.password = password
        self.ca_file = ca_file
        self.stats = CallStats()
        self._session = requests.Session()
        self._lock = threading.Lock()

    def query(self, sql: str, *, op: str = "query") -> list[tuple[Any, ...]]:
        """Run ``sql`` and return every row. ``op`` names the call in ``stats``."""
        return self._run(sql, op, fetch=True)

    def execute(self, sql: str, *, op: str = "execute") -> None:
        """Run a statement to completion (Presto reports DDL success only once it is drained)."""
        self._run(sql, op, fetch=False)

    def close(self) -> None:
        self._session.close()

    @retrying()
    def _run(self, sql: str, op: str, *, fetch: bool) -> list[tuple[Any, ...]]:
        self.stats.count(op)
        left = check_deadline(BACKEND, f"statement not started ({_head(sql)})")
        with self._lock:
            cursor = presto.connect(
                host=self.host,
                port=self.port,
                catalog=self.catalog,
                username=self.username,
                source="pipectl",
                poll_interval=POLL_INTERVAL,
                requests_session=self._session,
                requests_kwargs=self._requests_kwargs(left),
                protocol="https" if self.https else "http",
                password=self.password.reveal() if self.password is not None else None,
            ).cursor()
            try:
                cursor.execute(sql)
                # DDL must be drained too: its failure is only reported on a later poll.
                self._drain(cursor, sql)
                rows = cursor.fetchall()
            except DeadlineExceeded:
                raise
            except Exception as e:  # the SDK raises requests, pyhive and bare errors alike
                raise _wrap(e, sql) from e
        log.debug("presto statement", op=op, rows=len(rows))
        return [tuple(r) for r in rows] if fetch else []

    def _requests_kwargs(self, left: float | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"timeout": self._request_timeout(left)}
        if self.https and self.ca_file:
            kwargs["verify"] = self.ca_file
        return kwargs

    def _request_timeout(self, left: float | None) -> float:
        return self.timeout if left is None else max(0.1, min(self.timeout, left))

    def _drain(self, cursor: Any, sql: str) -> None:
        """Poll the statement to completion (rows collect in the cursor). Past the current
        ``deadline`` (``controller.adapters._retry``) the query is cancelled on the coordinator and
        ``DeadlineExceeded`` raised; each HTTP request waits no longer than the time left."""
        while True:
            left = time_left()
            if left is not None:
                if left <= 0:
                    _cancel(cursor)
                    raise DeadlineExceeded(BACKEND, f"statement cancelled at its deadline ({_head(sql)})")
                # pyhive keeps the per-request kwargs on the cursor: shrink the wait to the time left
                cursor._requests_kwargs["timeout"] = self._request_timeout(left)
            if cursor.poll() is None:
                return
            time.sleep(POLL_INTERVAL)


def _cancel(cursor: Any) -> None:
    try:
        cursor.cancel()
    except Exception as e:  # best effort: the coordinator also ends abandoned queries
        log.warning("presto cancel failed", error=f"{type(e).__name__}: {e}")


def _head(sql: str) -> str:
    return " ".join(sql.split())[:160]


def _wrap(e: Exception, sql: str) -> TransientBackendError | PermanentBackendError:
    head = _head(sql)
    if isinstance(e, requests.ConnectionError | requests.Timeout):
        return TransientBackendError(BACKEND, f"cannot reach the coordinator: {e} (statement: {head})")
    if isinstance(e, pyhive_exc.DatabaseError) and e.args and isinstance(e.args[0], dict):
        err: dict[str, Any] = e.args[0]
        name, kind = str(err.get("errorName", "")), str(err.get("errorType", ""))
        msg = f"{name}: {err.get('message', '')} (statement: {head})"
        if name in _TRANSIENT_ERROR_NAMES or kind in _TRANSIENT_ERROR_TYPES:
            return TransientBackendError(BACKEND, msg)
        return PermanentBackendError(BACKEND, msg)
    text = str(e)
    if isinstance(e, pyhive_exc.OperationalError) and "Unexpected status code 5" in text:
        return TransientBackendError(BACKEND, f"{text.splitlines()[0]} (statement: {head})")
    return PermanentBackendError(BACKEND, f"{type(e).__name__}: {text[:500]} (statement: {head})")
