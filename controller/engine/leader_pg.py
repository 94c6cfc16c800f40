"""Leader election on the PostgreSQL state store, without Kubernetes: ``PgAdvisoryElector``.

Several hosts sharing one PostgreSQL state store elect one leader with a session-level advisory
lock held on a dedicated connection (``controller.store.fencing.PgLeaderLock``). Taking the lock
increments the store's leader epoch in the same transaction; the new epoch is this leader's
**fencing token** (``fencing_token``). ``controller.cli.run`` hands it to the state store, and every
journal, status, known-good and key/value write checks it in its own transaction
(``controller.store.fencing.check_fence``), so a demoted leader — paused past the lock timeout, then
resumed — has its next write refused (``FencedOut``) and applies nothing more: the intent is
journaled before each side effect (one whose intent was journaled before the pause still completes).

``renew()`` asks the server whether this session still holds the lock and the epoch is still ours.
When the session is gone (the server ended it after ``idle_seconds`` idle — a paused leader — or
restarted), it takes the lock again on a new session only if the epoch is still its own, i.e. no
other instance has led since; otherwise leadership is lost. While the store cannot be reached at
all, leadership is kept but unconfirmed (``leader_unconfirmed``): nothing can be journaled, so
nothing is applied, and the process keeps serving its API instead of stepping down and exiting.
A leader whose connection stays idle for ``idle_seconds`` is disconnected by the server
(``idle_session_timeout``), which frees the lock for a standby: that is the takeover time after a
pause; after a crash the server frees it as soon as it sees the connection close.
"""

from __future__ import annotations

import threading

from controller.obs import metrics
from controller.obs.logging import get_logger
from controller.store.fencing import DEFAULT_LOCK, PgLeaderLock

__all__ = ["PgAdvisoryElector"]

_log = get_logger(__name__)


class PgAdvisoryElector:
    """``LeaderElector`` on ``pg_try_advisory_lock`` with a fencing token (the leader epoch)."""

    def __init__(
        self, url: str, identity: str, *, name: str = DEFAULT_LOCK, idle_seconds: float = 15.0
    ) -> None:
        self.identity = identity
        self._lock = PgLeaderLock(url, name=name, idle_seconds=idle_seconds)
        self._mutex = threading.Lock()  # the keeper thread renews while the engine may release
        self._epoch: int | None = None
        self._unconfirmed = False  # renewals failed for want of the store; logged once

    @property
    def is_leader(self) -> bool:
        return self._epoch is not None

    @property
    def fencing_token(self) -> int | None:
        """The epoch this instance took leadership with; None while it does not lead."""
        return self._epoch

    def acquire(self) -> bool:
        with self._mutex:
            if self._epoch is not None:
                return self._renew()
            try:
                epoch = self._take()
            except Exception as e:  # the store is down: stand by and try again
                _log.warning("leader_acquire_failed", elector="postgres", error=f"{type(e).__name__}: {e}")
                return False
            if epoch is None:
                return False
            self._epoch = epoch
        metrics.set_leader(self.identity, True)
        _log.info("leader_acquired", elector="postgres", identity=self.identity, epoch=epoch)
        return True

    def _take(self) -> int | None:
        """One try; a standby's connection the server ended while idle is replaced once."""
        try:
            return self._lock.take(self.identity)
        except Exception:
            self._lock.close()
        try:
            return self._lock.take(self.identity)
        except Exception:
            self._lock.close()
            raise

    def renew(self) -> bool:
        with self._mutex:
            return self._renew()

    def _renew(self) -> bool:
        if self._epoch is None:
            return False
        try:
            if self._lock.held(self._epoch):
                self._unconfirmed = False
                return True
            why = "lock or epoch taken by another instance"
        except Exception as e:  # our session is gone: take the lock back if nobody led since
            self._lock.close()
            try:
                if self._lock.retake(self._epoch):
                    _log.info("leader_session_renewed", elector="postgres", epoch=self._epoch,
                              after=_first(e))
                    self._unconfirmed = False
                    return True
                why = f"session lost ({_first(e)}) and another instance holds the lock or has led since"
            except Exception as unreachable:
                self._lock.close()
                if not self._unconfirmed:
                    _log.warning("leader_unconfirmed", elector="postgres", epoch=self._epoch,
                                 why=f"state store unreachable: {_first(unreachable)}")
                self._unconfirmed = True
                return True
        self._lose(why)
        return False

    def release(self) -> None:
        with self._mutex:
            if self._epoch is not None:
                _log.info("leader_released", elector="postgres", identity=self.identity, epoch=self._epoch)
                self._lose(None)
            self._lock.close()

    def holder(self) -> str | None:
        """Who took the current epoch, for a standby's log line and a refused CLI verb."""
        try:
            return self._lock.holder()
        except Exception:
            self._lock.close()
            return None

    def _lose(self, why: str | None) -> None:
        epoch, self._epoch = self._epoch, None
        self._lock.close()
        metrics.set_leader(self.identity, False)
        metrics.clear_leader_series()
        if why is not None:
            _log.warning("leader_lost", elector="postgres", identity=self.identity, epoch=epoch, why=why)


def _first(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}"
