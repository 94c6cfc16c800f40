"""Leader election: only one controller instance reconciles at a time.

Three electors behind one Protocol:

* ``FileLockElector`` — ``fcntl.flock`` on a lock file under the state directory; the single-host
  default. The kernel drops the lock when the holder's process dies, however it dies.
* ``LeaseElector`` — a ``coordination.k8s.io/v1`` Lease, when running in Kubernetes with two
  replicas for HA. The holder renews ``renewTime`` every few seconds; a candidate takes over a lease
  nobody renewed for ``leaseDurationSeconds``. Every write is a ``replace`` carrying the
  ``resourceVersion`` that was read, so two candidates racing for an expired lease cannot both win:
  the API server rejects the second with 409 Conflict.
* ``PgAdvisoryElector`` (``leader_pg``) — a PostgreSQL advisory lock on the shared state store, for
  several hosts without Kubernetes; the only one with a fencing token (``fencing_token``) that the
  journal checks on every write (``controller.store.fencing``).

The engine calls ``acquire()`` until it returns True, then keeps leadership with a
``LeadershipKeeper`` — a thread that calls ``renew()`` every couple of seconds, because one pass
can outlast a 15 s lease — stops work when the keeper reports the loss, and calls ``release()`` on
shutdown. ``elector_from_env`` picks an elector from the environment the Deployment sets.

Electors keep ``pipectl_leader{instance}`` current and, on losing leadership, clear the
per-release series (``metrics.clear_leader_series``) so a standby does not raise alerts on its
stale view.

The ``kubernetes`` SDK is imported lazily, and only here and in ``k8s_status``: a single-host
controller never loads it.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from controller.obs import metrics
from controller.obs.logging import get_logger

__all__ = [
    "FileLockElector",
    "LeaderElector",
    "LeadershipKeeper",
    "LeaseDecision",
    "LeaseElector",
    "default_identity",
    "elector_from_env",
    "in_cluster_namespace",
    "lease_decision",
]

_log = get_logger(__name__)

LeaseDecision = Literal["acquire", "renew", "wait"]

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


def lease_decision(
    lease_holder: str | None,
    renew_time: datetime | None,
    duration: float | None,
    now: datetime,
    me: str,
) -> LeaseDecision:
    """What a candidate ``me`` should do with a Lease it has just read.

    * ``renew``: ``me`` holds it;
    * ``acquire``: nobody holds it, or the holder has not renewed within ``duration`` seconds of
      ``renew_time`` (a lease without renew time or duration counts as expired, as in client-go);
    * ``wait``: someone else holds a live lease.
    """
    if not lease_holder:
        return "acquire"
    if lease_holder == me:
        return "renew"
    if renew_time is None or not duration or duration <= 0:
        return "acquire"
    if now >= renew_time + timedelta(seconds=duration):
        return "acquire"
    return "wait"


def _micro_time(when: datetime) -> datetime:
    """A datetime the API server accepts as a MicroTime.

    MicroTime is parsed with exactly six fraction digits, and the client serialises with
    ``isoformat()``, which drops the fraction when it is zero; one microsecond later is harmless.
    """
    return when.replace(microsecond=1) if when.microsecond == 0 else when


class LeaseElector:
    """Leader election through a ``coordination.k8s.io/v1`` Lease (client-go's algorithm).

    Expiry is judged on this process's clock: the time we *observed* the lease record change,
    not the ``renewTime`` written by another host, so clock skew between nodes cannot cause an
    early takeover. A candidate that starts while a dead leader's lease is still recorded
    therefore waits one full ``lease_seconds`` before taking over.

    A leader that cannot reach the API server keeps leadership only until ``renew_deadline``
    after its last successful renewal (default two thirds of the lease), then steps down on its
    own — before any candidate can take over.
    """

    def __init__(
        self,
        name: str,
        namespace: str,
        identity: str,
        lease_seconds: int = 15,
        *,
        renew_deadline: float | None = None,
        api: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_deadline = renew_deadline if renew_deadline is not None else lease_seconds * 2 / 3
        self._api = api
        self._clock = clock
        self._lock = threading.Lock()  # the keeper thread renews while the engine may release
        self._is_leader = False
        self._last_renewed = 0.0  # clock() of our last successful write as leader
        # (holder, renewTime, resourceVersion) last read, and clock() when it last changed
        self._observed: tuple[str | None, datetime | None, str | None] | None = None
        self._observed_at = 0.0

    @classmethod
    def in_cluster(cls, name: str, identity: str | None = None, lease_seconds: int = 15) -> LeaseElector:
        """An elector for the pod it runs in: service-account credentials, the pod's namespace."""
        from kubernetes import client, config

        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return cls(
            name,
            in_cluster_namespace(),
            identity or default_identity(),
            lease_seconds,
            api=client.CoordinationV1Api(),
        )

    @property
    def is_leader(self) -> bool:
        return self._is_leader

    @property
    def fencing_token(self) -> int | None:
        return None  # the Lease is checked on every renewal, not in the journal write

    @property
    def api(self) -> Any:
        if self._api is None:
            from kubernetes import client

            self._api = client.CoordinationV1Api()
        return self._api

    def acquire(self) -> bool:
        with self._lock:
            return self._try()

    def renew(self) -> bool:
        with self._lock:
            return self._is_leader and self._try()

    def release(self) -> None:
        """Clear the holder so a standby takes over at once instead of after expiry."""
        with self._lock:
            if self._is_leader:
                self._set_leader(False, "released")
                self._clear_holder()

    def _clear_holder(self) -> None:
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec is not None and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = _micro_time(datetime.now(UTC))
                self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except Exception as e:
            # The lease simply expires after lease_seconds.
            _log.warning("lease_release_failed", lease=self.name, error=str(e))

    def _try(self) -> bool:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        now_mono = self._clock()
        now = datetime.now(UTC)
        try:
            try:
                lease = self.api.read_namespaced_lease(self.name, self.namespace)
            except ApiException as e:
                if e.status != 404:
                    raise
                return self._create(client, now, now_mono)

            spec = lease.spec or client.V1LeaseSpec()
            holder = spec.holder_identity
            record = (holder, spec.renew_time, lease.metadata.resource_version)
            if record != self._observed:
                self._observed, self._observed_at = record, now_mono
            observed_renew = now - timedelta(seconds=now_mono - self._observed_at)
            decision = lease_decision(holder, observed_renew, spec.lease_duration_seconds, now, self.identity)
            if decision == "wait":
                if self._is_leader:
                    self._set_leader(False, f"lease held by {holder}")
                return False

            if decision == "acquire":
                spec.holder_identity = self.identity
                spec.acquire_time = _micro_time(now)
                spec.lease_transitions = (spec.lease_transitions or 0) + 1
            spec.renew_time = _micro_time(now)
            spec.lease_duration_seconds = self.lease_seconds
            lease.spec = spec
            # lease.metadata.resourceVersion is the one we read: a concurrent writer makes this 409.
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as e:
            if e.status == 409:
                # Someone else wrote first; whoever it was, we are not (or no longer) sure to lead.
                return self._on_conflict()
            return self._on_error(e, now_mono)
        except Exception as e:  # connection refused, timeouts: urllib3 errors
            return self._on_error(e, now_mono)

        self._last_renewed = now_mono
        if not self._is_leader:
            self._set_leader(True, "acquired")
        return True

    def _create(self, client: Any, now: datetime, now_mono: float) -> bool:
        from kubernetes.client.exceptions import ApiException

        lease = client.V1Lease(
            metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
            spec=client.V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=self.lease_seconds,
                acquire_time=_micro_time(now),
                renew_time=_micro_time(now),
                lease_transitions=0,
            ),
        )
        try:
            self.api.create_namespaced_lease(self.namespace, lease)
        except ApiException as e:
            if e.status == 409:  # created by another candidate between our read and create
                return False
            raise
        self._last_renewed = now_mono
        self._set_leader(True, "created lease")
        return True

    def _on_conflict(self) -> bool:
        self._observed = None  # re-read and re-judge on the next call
        if self._is_leader:
            self._set_leader(False, "conflicting write to the lease")
        return False

    def _on_error(self, error: Exception, now_mono: float) -> bool:
        if self._is_leader and now_mono - self._last_renewed < self.renew_deadline:
            _log.warning("lease_renew_failed", lease=self.name, error=str(error))
            return True
        if self._is_leader:
            self._set_leader(False, f"could not renew for {self.renew_deadline:.0f}s: {error}")
        else:
            _log.warning("lease_acquire_failed", lease=self.name, error=str(error))
        return False

    def _set_leader(self, leader: bool, why: str) -> None:
        self._is_leader = leader
        metrics.set_leader(self.identity, leader)
        if not leader:
            metrics.clear_leader_series()
        _log.info(
            "leader_acquired" if leader else "leader_lost",
            elector="lease",
            lease=f"{self.namespace}/{self.name}",
            identity=self.identity,
            why=why,
        )


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
      ``PIPECTL_LEASE_NAME`` (default ``pipectl-controller``) with identity ``POD_NAME``;
    * ``postgres``: ``PgAdvisoryElector`` on the PostgreSQL state store ``state_url``, lock timeout
      ``PIPECTL_LEADER_LOCK_SECONDS`` (default 15); the default when ``state_url`` is PostgreSQL;
    * ``file``: a file lock at ``<state_dir>/controller.lock``; the default otherwise.
    """
    asked = os.environ.get("PIPECTL_LEADER_ELECTION", "").strip().lower()
    if asked == "lease":
        return LeaseElector.in_cluster(
            os.environ.get("PIPECTL_LEASE_NAME", "pipectl-controller"),
            identity=os.environ.get("POD_NAME") or None,
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
