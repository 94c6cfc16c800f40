"""A small PrestoDB client (pyhive.presto over HTTP): queries for serving views, gates and tests.

``query`` returns all rows; ``execute`` runs a statement (DDL, INSERT) to completion. Errors are
wrapped in pipectl's tree: connection failures, HTTP 5xx and the server's "insufficient
resources" / "starting up" / metastore errors are transient (retried with backoff), anything else
— a syntax error, an unknown table — is permanent. Every statement counts one call in ``stats``
(a statement is one logical round trip, however many HTTP polls Presto needs to finish it).
"""

from __future__ import annotations

import threading
from typing import Any

import requests
import structlog
from pyhive import exc as pyhive_exc
from pyhive import presto

from controller.adapters._retry import retrying
from controller.adapters.base import CallStats
from controller.model.errors import PermanentBackendError, TransientBackendError

log = structlog.get_logger(__name__)

BACKEND = "presto"

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
    """One PrestoDB coordinator; statements run in ``catalog`` as ``username``."""

    def __init__(
        self,
        host: str,
        port: int = 8080,
        catalog: str = "hive",
        username: str = "pipectl",
        *,
        timeout: float = 60.0,
    ) -> None:
        self.host = host
        self.port = port
        self.catalog = catalog
        self.username = username
        self.timeout = timeout
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
        with self._lock:
            cursor = presto.connect(
                host=self.host,
                port=self.port,
                catalog=self.catalog,
                username=self.username,
                source="pipectl",
                poll_interval=0.05,
                requests_session=self._session,
                requests_kwargs={"timeout": self.timeout},
            ).cursor()
            try:
                cursor.execute(sql)
                # DDL must be drained too: its failure is only reported on a later poll.
                rows = cursor.fetchall()
            except Exception as e:  # the SDK raises requests, pyhive and bare errors alike
                raise _wrap(e, sql) from e
        log.debug("presto statement", op=op, rows=len(rows))
        return [tuple(r) for r in rows] if fetch else []


def _wrap(e: Exception, sql: str) -> TransientBackendError | PermanentBackendError:
    head = " ".join(sql.split())[:160]
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
