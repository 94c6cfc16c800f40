"""``PgAdvisoryElector`` over a stand-in of the store's ``PgLeaderLock`` (the real lock on PostgreSQL:
tests/integration/test_leader_pg.py), and which elector ``elector_from_env`` picks."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.engine.leader import FileLockElector, elector_from_env
from controller.engine.leader_pg import PgAdvisoryElector
from controller.obs.metrics import REGISTRY

PG = "postgresql+psycopg://u:p@127.0.0.1:5433/db"


class FakeLock:
    """``PgLeaderLock``'s interface: take → epoch or None, held(epoch), holder(), close()."""

    def __init__(self) -> None:
        self.epoch, self.owner, self.down, self.closed, self.stale = 0, "", False, 0, 0
        self.session_lost = self.owner_elsewhere = False

    def take(self, holder: str) -> int | None:
        if self.stale:  # the server ended the idle session; close() then take() connects anew
            raise OSError("terminating connection due to idle-session timeout")
        if self.down:
            raise OSError("connection refused")
        if self.owner:
            return None
        self.epoch, self.owner = self.epoch + 1, holder
        return self.epoch

    def held(self, epoch: int) -> bool:
        if self.down or self.session_lost:
            raise OSError("server closed the connection unexpectedly")
        return epoch == self.epoch

    def retake(self, epoch: int) -> bool:
        if self.down:
            raise OSError("connection refused")
        self.session_lost = False
        if self.owner_elsewhere or epoch != self.epoch:
            return False
        return True

    def holder(self) -> str | None:
        return f"{self.owner} (epoch {self.epoch})"

    def close(self) -> None:
        self.closed += 1
        self.owner, self.stale = "", 0


def elector(lock: FakeLock, identity: str = "ctl-a") -> PgAdvisoryElector:
    e = PgAdvisoryElector(PG, identity)
    e._lock = lock  # type: ignore[assignment]
    return e


def test_leadership_carries_the_new_epoch_as_fencing_token() -> None:
    lock = FakeLock()
    a = elector(lock)
    assert (a.is_leader, a.fencing_token) == (False, None)
    assert a.acquire() is True
    assert (a.is_leader, a.fencing_token) == (True, 1)
    assert REGISTRY.get_sample_value("pipectl_leader", {"instance": "ctl-a"}) == 1
    assert a.renew() is True and a.acquire() is True and a.fencing_token == 1
    assert elector(lock, "ctl-b").acquire() is False  # the lock is taken
    a.release()
    assert (a.is_leader, a.fencing_token) == (False, None)
    assert REGISTRY.get_sample_value("pipectl_leader", {"instance": "ctl-a"}) == 0
    b = elector(lock, "ctl-b")
    assert b.acquire() and b.fencing_token == 2


def test_a_newer_epoch_is_lost_leadership() -> None:
    lock = FakeLock()
    a = elector(lock)
    assert a.acquire()
    lock.epoch = 5  # another instance took epoch 5
    assert a.renew() is False and a.fencing_token is None and lock.closed == 1
    assert REGISTRY.get_sample_value("pipectl_leader", {"instance": "ctl-a"}) == 0
    lock.epoch, lock.owner = 5, ""
    assert a.acquire() and a.fencing_token == 6


def test_a_lost_session_is_retaken_only_if_nobody_led_since() -> None:
    lock = FakeLock()
    a = elector(lock)
    assert a.acquire() and a.fencing_token == 1
    lock.session_lost = True  # the server ended the idle session (a pause); nobody took over
    assert a.renew() is True and a.fencing_token == 1  # same epoch: no one led in between
    lock.session_lost, lock.owner_elsewhere = True, True  # ... and now a standby holds the lock
    assert a.renew() is False and not a.is_leader


def test_an_unreachable_store_keeps_leadership_unconfirmed_until_it_answers() -> None:
    lock = FakeLock()
    a = elector(lock)
    assert a.acquire()
    lock.down = True  # nothing can be journaled (so applied) meanwhile; the process keeps serving
    assert a.renew() is True and a.renew() is True and a.fencing_token == 1
    lock.down, lock.session_lost = False, True
    lock.epoch = 2  # back, but another instance led meanwhile
    assert a.renew() is False and a.fencing_token is None and not a.is_leader


def test_a_standby_replaces_a_connection_the_server_ended_while_idle() -> None:
    lock = FakeLock()
    lock.stale = 1
    a = elector(lock)
    assert a.acquire() is True and a.fencing_token == 1 and lock.closed == 1


def test_elector_from_env_picks_postgres_for_a_postgresql_store(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    monkeypatch.delenv("PIPECTL_LEADER_ELECTION", raising=False)
    monkeypatch.delenv("PIPECTL_LEADER_LOCK_SECONDS", raising=False)
    e = elector_from_env(tmp_path, PG)
    assert isinstance(e, PgAdvisoryElector) and e._lock.idle_seconds == 15.0
    assert isinstance(elector_from_env(tmp_path, f"sqlite:///{tmp_path}/s.db"), FileLockElector)
    assert isinstance(elector_from_env(tmp_path), FileLockElector)

    monkeypatch.setenv("PIPECTL_LEADER_LOCK_SECONDS", "6")
    e = elector_from_env(tmp_path, PG)
    assert isinstance(e, PgAdvisoryElector) and e._lock.idle_seconds == 6.0
    monkeypatch.setenv("PIPECTL_LEADER_LOCK_SECONDS", "2")
    with pytest.raises(ValueError, match="PIPECTL_LEADER_LOCK_SECONDS='2' must be at least 5"):
        elector_from_env(tmp_path, PG)

    monkeypatch.setenv("PIPECTL_LEADER_ELECTION", "file")  # asked for: a file lock even on PostgreSQL
    assert isinstance(elector_from_env(tmp_path, PG), FileLockElector)
    monkeypatch.setenv("PIPECTL_LEADER_ELECTION", "postgres")
    with pytest.raises(ValueError, match="needs a PostgreSQL state store"):
        elector_from_env(tmp_path, f"sqlite:///{tmp_path}/s.db")
    monkeypatch.setenv("PIPECTL_LEADER_ELECTION", "postgress")
    with pytest.raises(ValueError, match="expected lease, postgres or file"):
        elector_from_env(tmp_path, PG)


def test_file_and_lease_electors_fence_nothing(tmp_path: Path) -> None:
    e = FileLockElector(tmp_path / "controller.lock")
    assert e.acquire() and e.fencing_token is None
    e.release()
