"""State-store bounds (``controller.store.timeouts``): PostgreSQL connect and statement timeouts,
SQLite busy timeout, so a hung database fails a pass instead of holding a worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.store.db import Store
from controller.store.timeouts import connect_args


def test_postgres_gets_connect_and_statement_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIPECTL_STATE_CONNECT_TIMEOUT", raising=False)
    monkeypatch.delenv("PIPECTL_STATE_STATEMENT_TIMEOUT", raising=False)
    args = connect_args("postgresql+psycopg://pipectl:pw@db:5432/pipectl")
    assert args == {"connect_timeout": 10, "options": "-c statement_timeout=60000"}
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    parsed = conninfo_to_dict(make_conninfo("host=db", **args))  # libpq accepts them as written
    assert parsed["connect_timeout"] == "10" and parsed["options"] == "-c statement_timeout=60000"


def test_postgres_timeouts_are_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPECTL_STATE_CONNECT_TIMEOUT", "3")
    monkeypatch.setenv("PIPECTL_STATE_STATEMENT_TIMEOUT", "2.5")
    assert connect_args("postgresql://h/db") == {"connect_timeout": 3, "options": "-c statement_timeout=2500"}
    monkeypatch.setenv("PIPECTL_STATE_STATEMENT_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="PIPECTL_STATE_STATEMENT_TIMEOUT='soon' is not a number"):
        connect_args("postgresql://h/db")
    monkeypatch.setenv("PIPECTL_STATE_STATEMENT_TIMEOUT", "0")
    with pytest.raises(ValueError, match="must be positive"):
        connect_args("postgresql://h/db")


def test_postgres_options_in_the_url_are_kept() -> None:
    """SQLAlchemy lets connect_args replace the URL's ``options`` (a search_path would be lost)."""
    url = "postgresql+psycopg://u:p@h:5432/db?options=-csearch_path%3Dpipectl_x"
    assert connect_args(url)["options"] == "-csearch_path=pipectl_x -c statement_timeout=60000"


def test_sqlite_store_has_a_busy_timeout(tmp_path: Path) -> None:
    assert connect_args("sqlite:///x.db") == {"timeout": 10.0}
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        with store.tx() as c:
            assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000
    finally:
        store.close()
