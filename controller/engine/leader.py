"""Leader election: only one controller instance reconciles at a time.

Three electors behind one Protocol:

* ``FileLockElector`` — ``fcntl.flock`` on a lock file under the state directory; the single-host
  default. The kernel drops the lock when the holder's process dies, however it dies.
* ``LeaseElector`` (``leader_lease``) — a ``coordination.k8s.io/v1`` Lease, when running in
  Kubernetes with two replicas for HA; on winning the Lease it takes the state store's next leader
  epoch as its fencing token, and refuses writes once its renew deadline has passed.
* ``PgAdvisoryElector`` (``leader_pg``) — a PostgreSQL advisory lock on the shared state store, for
  several hosts without Kubernetes; taking it takes the next leader epoch as its fencing token.

The Lease and PostgreSQL electors' ``fencing_token`` is checked by the state store in every fenced
write's transaction (``controller.store.fencing``); the file lock has none.

The engine calls ``acquire()`` until it returns True, then keeps leadership with a
``LeadershipKeeper`` — a thread that calls ``renew()`` every couple of seconds, because one pass
can outlast a 15 s lease — stops work when the keeper reports the loss, and calls ``release()`` on
shutdown. ``elector_from_env`` picks an elector from the environment the Deployment sets.

Electors keep ``pipectl_leader{instance}`` current and, on losing leadership, clear the
per-release series (``metrics.clear_leader_series``) so a standby does not raise alerts on its
stale view.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from controller.obs import metrics
from controller.obs.logging import get_logger

__all__ = [
    "FileLockElector",
    "LeaderElector",
    "LeadershipKeeper",
    "default_identity",
    "elector_from_env",
    "in_cluster_namespace",
]

_log = get_logger(__name__)

_SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class LeaderElector(Protocol):
    def acquire(self) -> bool:
        """Try once to become leader; True when this instance now holds leadership."""
        ...

    def renew(self) -> bool:
        """Confirm leadership; False when it was lost (stop reconciling)."""
        ...

    def release(self) -> None:
        """Give leadership up so a standby takes over without waiting for expiry."""
        ...

    @property
    def is_leader(self) -> bool: ...

    @property
    def fencing_token(self) -> int | None:
        """The epoch every journal write must still be current at (None: writes are not fenced)."""
        ...


def default_identity() -> str:
    """``<hostname>-<pid>``: unique per process, readable in ``kubectl get lease``."""
    return f"{socket.gethostname()}-{os.getpid()}"


class FileLockElector:
    """Leader election on one host: an exclusive ``flock`` on ``path``.

    The holder writes ``<identity> <pid>`` into the file, so ``cat .pipectl/controller.lock`` says
    who holds it. flock locks belong to the open file description: a second elector in the same
    process does not share the lock.
    """

    def __init__(self, path: str | Path, identity: str | None = None) -> None:
        self.path = Path(path)
        self.identity = identity or default_identity()
        self._fd: int | None = None

    @property
    def is_leader(self) -> bool:
        return self._fd is not None

    @property
    def fencing_token(self) -> int | None:
        return None  # one host: the kernel's lock is the only fence

    def acquire(self) -> bool:
        if self._fd is not None:
            return self.renew()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # os.open's descriptor is not inherited by children (PEP 446): a spark-submit started by
        # the controller must not keep holding the lock after the controller dies.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{self.identity} {os.getpid()}\n".encode(), 0)
        self._fd = fd
        metrics.set_leader(self.identity, True)
        _log.info("leader_acquired", elector="file", path=str(self.path), identity=self.identity)
        return True

    def renew(self) -> bool:
        """Still leader unless the lock file was deleted or replaced under us.

        A new file at the same path could be locked by another process while we hold the old
        inode's lock, so a changed inode means we lost.
        """
        if self._fd is None:
            return False
        try:
            same = os.fstat(self._fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            _log.warning("leader_lost", elector="file", path=str(self.path), why="lock file replaced")
            self._drop()
            return False
        return True

    def release(self) -> None:
        if self._fd is not None:
            _log.info("leader_released", elector="file", path=str(self.path), identity=self.identity)
        self._drop()

    def holder(self) -> str | None:
        """The ``<identity> <pid>`` line of the current (or last) holder, if any."""
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return None
        return text or None

    def _drop(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
            metrics.set_leader(self.identity, False)
            metrics.clear_leader_series()


class LeadershipKeeper:
    """Renews leadership from a daemon thread every ``period`` seconds.

    ``on_lost`` is called once, from the keeper's thread, when a renewal fails; the keeper then
    stops. The callback should only signal the engine (set an Event) — the engine stops work.
    """

    def __init__(self, elector: LeaderElector, on_lost: Callable[[], None], period: float = 2.0) -> None:
        self.elector = elector
        self.on_lost = on_lost
        self.period = period
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pipectl-leader-keeper", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop renewing (call before ``elector.release()``)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                still = self.elector.renew()
            except Exception as e:  # an elector bug must not leave a stale leader working
                _log.error("leader_renew_crashed", error=str(e))
                still = False
            if not still:
                self.on_lost()
                return


def in_cluster_namespace() -> str:
    """The pod's namespace: ``POD_NAMESPACE`` (downward API) or the service account's."""
    ns = os.environ.get("POD_NAMESPACE")
    if ns:
        return ns
    try:
        return _SA_NAMESPACE_FILE.read_text().strip()
    except FileNotFoundError:
        return "default"


def elector_from_env(state_dir: str | Path, state_url: str | None = None) -> LeaderElector:
    """The elector the environment asks for (``PIPECTL_LEADER_ELECTION``).

    * ``lease`` (set by ``manifests/platform/kubernetes/deployment.yaml``): a Lease named
      ``PIPECTL_LEASE_NAME`` (default ``pipectl-controller``) with identity ``POD_NAME``, duration
      ``PIPECTL_LEADER_LOCK_SECONDS`` (default 15), credentials from ``KUBECONFIG`` or the pod's
      service account; its fencing epoch is taken in the state store ``state_url``;
    * ``postgres``: ``PgAdvisoryElector`` on the PostgreSQL state store ``state_url``, lock timeout
      ``PIPECTL_LEADER_LOCK_SECONDS`` (default 15); the default when ``state_url`` is PostgreSQL;
    * ``file``: a file lock at ``<state_dir>/controller.lock``; the default otherwise.
    """
    asked = os.environ.get("PIPECTL_LEADER_ELECTION", "").strip().lower()
    if asked == "lease":
        from controller.engine.leader_lease import LeaseElector
        from controller.store.fencing import EpochTaker

        return LeaseElector.connect(
            os.environ.get("PIPECTL_LEASE_NAME", "pipectl-controller"),
            identity=os.environ.get("POD_NAME") or None,
            lease_seconds=round(_lock_seconds()),
            take_epoch=EpochTaker(str(state_url)) if state_url else None,
        )
    on_pg = bool(state_url) and str(state_url).startswith(("postgresql", "postgres:"))
    if asked == "postgres" or (not asked and on_pg):
        if not on_pg:
            why = f"needs a PostgreSQL state store (--state), not {state_url!r}"
            raise ValueError(f"PIPECTL_LEADER_ELECTION=postgres {why}")
        from controller.engine.leader_pg import PgAdvisoryElector

        return PgAdvisoryElector(
            str(state_url), os.environ.get("POD_NAME") or default_identity(), idle_seconds=_lock_seconds()
        )
    if asked not in ("", "file"):
        raise ValueError(f"PIPECTL_LEADER_ELECTION={asked!r}: expected lease, postgres or file")
    return FileLockElector(Path(state_dir) / "controller.lock")


def _lock_seconds() -> float:
    raw = os.environ.get("PIPECTL_LEADER_LOCK_SECONDS", "").strip() or "15"
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"PIPECTL_LEADER_LOCK_SECONDS={raw!r} is not a number of seconds") from None
    if value < 5:  # the keeper renews every 2 s: a shorter timeout would drop a healthy leader
        raise ValueError(f"PIPECTL_LEADER_LOCK_SECONDS={raw!r} must be at least 5")
    return value
