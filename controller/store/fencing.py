"""Fencing for leader election on the state store: the leader epoch and the PostgreSQL advisory lock.

* ``leader_epoch`` holds one row per lock name: the current **epoch** (fencing token), its holder
  and when it was taken. ``next_epoch`` increments it; the new leader's token is the new epoch.
  ``PgLeaderLock.take`` calls it in the same transaction in which it takes the session-level
  ``pg_try_advisory_lock``; the Kubernetes Lease elector (``controller.engine.leader_lease``) calls
  ``take_epoch`` (through ``EpochTaker``) each time it wins the Lease, on SQLite or PostgreSQL.
* ``check_fence`` runs inside each of a leader's writes, in the write's own transaction
  (``Store.tx(fenced=True)``: the journal, release status, known-good versions, key/value records):
  it reads the epoch row ``FOR SHARE`` and raises ``FencedOut`` unless it still equals the writer's
  token. A takeover's increment waits for that share lock, so a write either commits before the
  new epoch exists or sees it and is refused.
* ``LeaseLapsed`` (a ``FencedOut``) is what a Lease leader's own check raises when it no longer
  holds the Lease: past the renew deadline, a renewal found another holder or failed
  (``Store.fence_guard``, ``LeaseElector.check_held``).

The advisory lock lives on a dedicated connection (``PgLeaderLock``), never a pooled one:
PostgreSQL drops a session-level lock only when that session ends. The session is ended by the server when it
stays idle longer than ``idle_seconds`` (``idle_session_timeout``), so a leader that is paused
(SIGSTOP, a frozen VM) loses the lock within that time even though its TCP connection looks alive;
a killed one loses it as soon as the server sees the connection close. (``idle_session_timeout``
needs PostgreSQL 14 or later.)

The lock key is derived from the lock name and the connection's ``current_schema()``, so two state
stores in different schemas of one database have different locks. Tests:
``tests/unit/store/test_fencing.py`` (SQLite), ``tests/integration/test_leader_pg.py`` (PostgreSQL),
``tests/integration/test_leader_kube.py`` (the Lease's epoch on PostgreSQL).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, DateTime, MetaData, String, Table, create_engine, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from controller.model.errors import PipectlError
from controller.store.timeouts import connect_args

__all__ = [
    "EpochTaker",
    "FencedOut",
    "LeaseLapsed",
    "PgLeaderLock",
    "check_fence",
    "current_epoch",
    "ensure_epoch_table",
    "leader_epoch",
    "next_epoch",
    "take_epoch",
]

DEFAULT_LOCK = "pipectl-controller"

_metadata = MetaData()

leader_epoch = Table(
    "leader_epoch",
    _metadata,
    Column("name", String(128), primary_key=True),
    Column("epoch", BigInteger, nullable=False),
    Column("holder", String(256), nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
)


class FencedOut(PipectlError):
    """A write (journal, status, ...) by a controller whose leadership epoch is no longer current."""

    token: int | None

    def __init__(self, token: int, current: int | None, name: str = DEFAULT_LOCK):
        self.token, self.current = token, current
        now = f"epoch {current}" if current is not None else "no epoch"
        super().__init__(
            f"fenced out: write refused: this controller's fencing token {token} is not the "
            f"current leader {now} of {name!r} (another controller took leadership); nothing applied"
        )


class LeaseLapsed(FencedOut):
    """A Lease leader's write after it lost the Lease (or could not confirm it past the renew deadline)."""

    def __init__(self, token: int | None, lease: str, why: str):
        msg = f"fenced out: write refused: {why} (Lease {lease}); another may lead; nothing applied"
        PipectlError.__init__(self, msg)
        self.token, self.current = token, None


def ensure_epoch_table(engine: Engine) -> None:
    _metadata.create_all(engine, tables=[leader_epoch])


def next_epoch(conn: Connection, holder: str, name: str = DEFAULT_LOCK) -> int:
    """Increment the epoch of ``name`` (epoch 1 when there is no row yet) in the caller's
    transaction; returns it. On PostgreSQL the update waits for the share locks of writes in
    flight (``check_fence``), so none of them commits after the new epoch."""
    now = datetime.now(UTC)
    epoch = conn.execute(
        leader_epoch.update()
        .where(leader_epoch.c.name == name)
        .values(epoch=leader_epoch.c.epoch + 1, holder=holder, acquired_at=now)
        .returning(leader_epoch.c.epoch)
    ).scalar()
    if epoch is None:
        epoch = 1
        conn.execute(leader_epoch.insert().values(name=name, epoch=1, holder=holder, acquired_at=now))
    return int(epoch)


def take_epoch(engine: Engine, holder: str, name: str = DEFAULT_LOCK) -> int:
    """``next_epoch`` in a transaction of its own: the new leader's fencing token."""
    with engine.begin() as conn:
        return next_epoch(conn, holder, name)


class EpochTaker:
    """``take_epoch`` on the state store at ``url``, as a callable of the holder (what
    ``LeaseElector`` calls on winning the Lease). No connection is kept between calls."""

    def __init__(self, url: str, name: str = DEFAULT_LOCK):
        self.url, self.name = url, name
        self._engine: Engine | None = None

    def __call__(self, holder: str) -> int:
        if self._engine is None:
            engine = create_engine(self.url, poolclass=NullPool, connect_args=connect_args(self.url))
            ensure_epoch_table(engine)
            self._engine = engine
        return take_epoch(self._engine, holder, self.name)


def current_epoch(conn: Connection, name: str = DEFAULT_LOCK, *, share: bool = False) -> int | None:
    q = select(leader_epoch.c.epoch).where(leader_epoch.c.name == name)
    if share:
        q = q.with_for_update(read=True)  # FOR SHARE on PostgreSQL; SQLite locks the whole file anyway
    row = conn.execute(q).first()
    return int(row[0]) if row else None


def check_fence(
    conn: Connection, token: int | None, name: str = DEFAULT_LOCK, *, guard: Callable[[], None] | None = None
) -> None:
    """Raise ``FencedOut`` unless ``token`` is the current epoch (``None``: no fencing, no query),
    then run ``guard`` (a Lease leader's ``check_held``: raises ``LeaseLapsed`` once it lost the Lease)."""
    if token is not None:
        _check_epoch(conn, token, name)
    if guard is not None:
        guard()


def _check_epoch(conn: Connection, token: int, name: str) -> None:
    if conn.dialect.name == "postgresql":
        # A writer paused inside this transaction must not hold the share lock (and so block a
        # takeover's epoch increment) forever.
        conn.exec_driver_sql("SET LOCAL idle_in_transaction_session_timeout = '10s'")
    current = current_epoch(conn, name, share=True)
    if current != token:
        raise FencedOut(token, current, name)


def lock_key(schema: str, name: str) -> int:
    """A positive 31-bit advisory lock key, so ``pg_locks`` shows it as classid 0, objid key."""
    return int.from_bytes(hashlib.sha256(f"{schema}/{name}".encode()).digest()[:4], "big") & 0x7FFFFFFF


class PgLeaderLock:
    """The session-level advisory lock of one state store and its epoch row, on a dedicated connection."""

    def __init__(self, url: str, name: str = DEFAULT_LOCK, idle_seconds: float = 15.0):
        self.url, self.name, self.idle_seconds = url, name, idle_seconds
        self._engine: Engine | None = None
        self._conn: Connection | None = None
        self._key: int | None = None
        self._owns = False  # this session took the lock (take/retake); a new session holds nothing

    def _connect(self) -> Connection:
        if self._conn is None:
            if self._engine is None:
                args = connect_args(self.url)
                self._engine = create_engine(self.url, poolclass=NullPool, connect_args=args)
                ensure_epoch_table(self._engine)
            conn = self._engine.connect()
            ms = max(1000, round(self.idle_seconds * 1000))
            with conn.begin():  # every use is a short transaction: idle in between, never in one
                conn.exec_driver_sql(f"SET idle_session_timeout = {ms}")
                schema = conn.execute(text("SELECT current_schema()")).scalar_one()
            self._key = lock_key(str(schema), self.name)
            self._conn = conn
        return self._conn

    def take(self, holder: str) -> int | None:
        """Take the lock and the next epoch (returned), or None when another session holds it."""
        conn = self._connect()
        with conn.begin():
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar_one()
            if not got:
                return None
            self._owns = True
            return next_epoch(conn, holder, self.name)

    def retake(self, epoch: int) -> bool:
        """After our session was lost: take the lock again, on a new session, only if nobody has led
        since (the epoch is still ``epoch``; no increment). False: another instance holds it or led."""
        conn = self._connect()
        with conn.begin():
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar_one()
            if not got:
                return False
            if current_epoch(conn, self.name) == epoch:
                self._owns = True
                return True
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
        return False

    def held(self, epoch: int) -> bool:
        """The connection answers, our session still holds the lock and ``epoch`` is still current.
        Raises when the session that took the lock is gone (closed here, or ended by the server)."""
        if self._conn is None or not self._owns:
            raise ConnectionError("the session that took the lock is closed")
        conn = self._conn
        with conn.begin():
            held = conn.execute(
                text(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND pid = pg_backend_pid() AND classid = 0 AND objid::bigint = :k AND objsubid = 1)"
                ),
                {"k": self._key},
            ).scalar_one()
            return bool(held) and current_epoch(conn, self.name) == epoch

    def holder(self) -> str | None:
        """Who took the current epoch (``<holder> (epoch N)``), if anyone ever did."""
        conn = self._connect()
        with conn.begin():
            row = conn.execute(
                select(leader_epoch.c.holder, leader_epoch.c.epoch).where(leader_epoch.c.name == self.name)
            ).first()
        return f"{row[0]} (epoch {row[1]})" if row else None

    def close(self) -> None:
        """Unlock (best effort) and end the session; ending it frees the lock in any case."""
        conn, self._conn, self._owns = self._conn, None, False
        if conn is not None:
            # An error means the session is gone already: nothing is held.
            with suppress(Exception), conn.begin():
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
            with suppress(Exception):
                conn.close()
