"""Retries at one layer only, and overall deadlines (``controller.adapters._retry``,
``controller.adapters.presto``): nested retrying calls never multiply their attempts, a deadline
stops retries and cancels a Presto statement still polling, and it is never retried itself."""

from __future__ import annotations

import time
from typing import Any

import pytest

from controller.adapters import presto as presto_mod
from controller.adapters._retry import DeadlineExceeded, deadline, retrying, time_left
from controller.adapters.presto import PrestoClient
from controller.model.errors import TransientBackendError


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """tenacity sleeps through ``time.sleep``: make the backoff instant (deadlines use the clock)."""
    import tenacity.nap

    monkeypatch.setattr(tenacity.nap.time, "sleep", lambda _s: None)


@pytest.mark.usefixtures("no_backoff")
def test_nested_retrying_calls_do_not_stack() -> None:
    calls = {"outer": 0, "inner": 0}

    @retrying()
    def inner() -> None:  # e.g. a Presto statement
        calls["inner"] += 1
        raise TransientBackendError("presto", "coordinator starting up")

    @retrying()
    def outer() -> None:  # e.g. the Hive adapter's apply, which sends a view to Presto
        calls["outer"] += 1
        inner()

    with pytest.raises(TransientBackendError):
        outer()
    assert calls == {"outer": 4, "inner": 4}  # was 4 x 4 = 16 statements

    calls["inner"] = 0
    with pytest.raises(TransientBackendError):
        inner()  # on its own it still retries
    assert calls["inner"] == 4


@pytest.mark.usefixtures("no_backoff")
def test_deadline_stops_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr("controller.adapters._retry.clock", lambda: now[0])
    attempts = []

    @retrying(attempts=10)
    def flaky() -> None:
        attempts.append(now[0])
        now[0] += 1.0  # each attempt takes a second
        raise TransientBackendError("presto", "busy")

    with deadline(2.5), pytest.raises(TransientBackendError):
        flaky()
    assert attempts == [0.0, 1.0, 2.0]  # the third ends past the deadline: no fourth
    assert time_left() is None  # the block's deadline is gone after it


def test_nested_deadline_keeps_the_earlier_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("controller.adapters._retry.clock", lambda: 100.0)
    with deadline(5):
        with deadline(60):
            assert time_left() == 5
        assert time_left() == 5


def test_deadline_exceeded_is_not_retried() -> None:
    calls = []

    @retrying()
    def late() -> None:
        calls.append(1)
        raise DeadlineExceeded("presto", "too late")

    with pytest.raises(DeadlineExceeded):
        late()
    assert calls == [1]


class HangingCursor:
    """A Presto statement that never finishes: every poll says it is still running."""

    def __init__(self) -> None:
        self._requests_kwargs: dict[str, Any] = {"timeout": 60.0}
        self.polls = 0
        self.cancelled = False
        self.timeouts: list[float] = []

    def execute(self, sql: str) -> None:
        pass

    def poll(self) -> dict[str, Any] | None:
        self.polls += 1
        self.timeouts.append(self._requests_kwargs["timeout"])
        return {"stats": {"state": "RUNNING"}}

    def cancel(self) -> None:
        self.cancelled = True

    def fetchall(self) -> list[Any]:
        raise AssertionError("a cancelled statement is never fetched")


def test_presto_statement_is_cancelled_at_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    cursor = HangingCursor()
    monkeypatch.setattr(presto_mod.presto, "connect", lambda **_kw: type("C", (), {"cursor": lambda s: cursor})())
    client = PrestoClient("127.0.0.1", timeout=60)
    t0 = time.monotonic()
    with deadline(0.3), pytest.raises(DeadlineExceeded, match="cancelled at its deadline"):
        client.query("SELECT count(*) FROM t", op="gate")
    assert time.monotonic() - t0 < 2.0
    assert cursor.cancelled and cursor.polls > 1
    assert max(cursor.timeouts) <= 0.3  # no HTTP request may outwait the deadline
    assert client.stats.calls["gate"] == 1  # not retried


def test_presto_without_deadline_drains_to_completion(monkeypatch: pytest.MonkeyPatch) -> None:
    class Finishing(HangingCursor):
        def poll(self) -> dict[str, Any] | None:
            self.polls += 1
            return None if self.polls >= 3 else {"stats": {"state": "RUNNING"}}

        def fetchall(self) -> list[Any]:
            return [[42]]

    cursor = Finishing()
    monkeypatch.setattr(presto_mod.presto, "connect", lambda **_kw: type("C", (), {"cursor": lambda s: cursor})())
    assert PrestoClient("127.0.0.1").query("SELECT 42") == [(42,)]
    assert cursor.polls == 3 and not cursor.cancelled
