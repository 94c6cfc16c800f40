"""Bounds on the state store, so a hung database fails a pass (a transient error, retried next
pass) instead of holding a controller worker forever.

- PostgreSQL: a connect timeout and a server-side ``statement_timeout`` (seconds, overridable with
  ``PIPECTL_STATE_CONNECT_TIMEOUT`` and ``PIPECTL_STATE_STATEMENT_TIMEOUT``);
- SQLite: a writer waits at most ``SQLITE_BUSY_TIMEOUT`` for another one's lock (the driver's
  ``timeout`` and ``PRAGMA busy_timeout``, set by ``controller.store.db``).

Used by ``controller.store.db.Store`` when it creates its engine; tests:
``tests/unit/store/test_store_timeouts.py``.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qs, urlsplit

PG_CONNECT_TIMEOUT = 10.0
PG_STATEMENT_TIMEOUT = 60.0
SQLITE_BUSY_TIMEOUT = 10.0


def _seconds(var: str, default: float) -> float:
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{var}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{var}={raw!r} must be positive")
    return value


def connect_args(url: str) -> dict[str, Any]:
    """The DBAPI connect arguments for a state-store URL (``create_engine(connect_args=…)``)."""
    if url.startswith("sqlite"):
        return {"timeout": SQLITE_BUSY_TIMEOUT}
    if not url.startswith(("postgresql", "postgres")):
        return {}
    connect = _seconds("PIPECTL_STATE_CONNECT_TIMEOUT", PG_CONNECT_TIMEOUT)
    statement = _seconds("PIPECTL_STATE_STATEMENT_TIMEOUT", PG_STATEMENT_TIMEOUT)
    options = f"-c statement_timeout={max(1, round(statement * 1000))}"
    given = parse_qs(urlsplit(url).query).get("options")  # connect_args replace the URL's: keep them
    return {
        "connect_timeout": max(1, round(connect)),
        "options": f"{given[-1]} {options}" if given else options,
    }
