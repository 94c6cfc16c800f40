"""Leader election through a Kubernetes ``coordination.k8s.io/v1`` Lease: ``LeaseElector``.

For two replicas in Kubernetes (``PIPECTL_LEADER_ELECTION=lease``). The holder renews ``renewTime``
every few seconds; a candidate takes over a lease nobody renewed for ``leaseDurationSeconds``.
Every write is a ``replace`` carrying the ``resourceVersion`` that was read, so two candidates
racing for an expired lease cannot both win: the API server rejects the second with 409 Conflict.

Fencing, as on PostgreSQL (``leader_pg``): each time this instance wins the Lease (creates it, takes
it over, or finds its own identity there after a restart) it takes the next epoch of the state
store's ``leader_epoch`` row (``take_epoch``, ``controller.store.fencing.EpochTaker``) before it
counts as leader; that epoch is its ``fencing_token``, checked in the transaction of every journal,
status, known-good and key/value write. A demoted leader — paused past the lease, resumed — has its
next write refused (``FencedOut``) once the new leader took its epoch. Two more checks close the gap
before that: ``check_held`` (``Store.fence_guard``) lets a write through only while the last renewal
is within the renew deadline — which passes before any candidate may take over — or once a renewal
made there and then still finds the Lease ours (else ``LeaseLapsed``); and a renewal that finds
another holder (or no lease) drops leadership at once instead of taking the lease back.

The ``kubernetes`` SDK is imported lazily: a controller that does not use a Lease never loads it.
Tests: ``tests/unit/engine/test_leader_lease.py``, ``tests/integration/test_k8s_apiserver.py``,
``tests/integration/test_leader_kube.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from controller.engine.leader import default_identity, in_cluster_namespace
from controller.obs import metrics
from controller.obs.logging import get_logger
from controller.store.fencing import LeaseLapsed

__all__ = ["LeaseDecision", "LeaseElector", "lease_decision"]

_log = get_logger(__name__)

LeaseDecision = Literal["acquire", "renew", "wait"]


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

    ``take_epoch(identity)`` (optional) returns a new fencing token; called on each win.
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
        take_epoch: Callable[[str], int] | None = None,
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_deadline = renew_deadline if renew_deadline is not None else lease_seconds * 2 / 3
        # Each API call is bounded: a hung call would hold the lock, and with it every fenced write
        # (``check_held``), past the point where this instance should have stepped down.
        self.call_timeout = max(1.0, self.renew_deadline / 3)
        self._api = api
        self._clock = clock
        self._take_epoch = take_epoch
        self._lock = threading.Lock()  # the keeper thread renews while the engine may release
        self._is_leader = False
        self._epoch: int | None = None
        self._last_renewed = 0.0  # clock() of our last successful write as leader
        # (holder, renewTime, resourceVersion) last read, and clock() when it last changed
        self._observed: tuple[str | None, datetime | None, str | None] | None = None
        self._observed_at = 0.0

    @classmethod
    def connect(
        cls,
        name: str,
        identity: str | None = None,
        lease_seconds: int = 15,
        take_epoch: Callable[[str], int] | None = None,
    ) -> LeaseElector:
        """An elector with ``KUBECONFIG``'s credentials when set or present, else the pod's service
        account (``controller.adapters.kube.api_client``), in the pod's namespace."""
        from kubernetes import client

        from controller.adapters.kube import api_client

        return cls(
            name,
            in_cluster_namespace(),
            identity or default_identity(),
            lease_seconds,
            api=client.CoordinationV1Api(api_client()),
            take_epoch=take_epoch,
        )

    @property
    def is_leader(self) -> bool:
        return self._is_leader

    @property
    def fencing_token(self) -> int | None:
        """The epoch taken on winning the Lease; None while not leading or without ``take_epoch``."""
        return self._epoch if self._is_leader else None

    @property
    def api(self) -> Any:
        if self._api is None:
            from kubernetes import client

            self._api = client.CoordinationV1Api()
        return self._api

    def acquire(self) -> bool:
        with self._lock:
            return self._try(renewing=self._is_leader)

    def renew(self) -> bool:
        with self._lock:
            return self._is_leader and self._try(renewing=True)

    def check_held(self) -> None:
        """Raise ``LeaseLapsed`` unless this instance still holds the Lease it thinks it holds (run
        in each fenced write: ``Store.fence_guard``). Within the renew deadline of the last renewal
        that is known without a call; past it (a paused process, a late keeper) one renewal must
        find the Lease still ours first, else this instance steps down and the write is refused."""
        since = self._clock() - self._last_renewed
        if self._is_leader and since >= self.renew_deadline:
            self.renew()
        if not self._is_leader:
            why = (f"this controller no longer holds the Lease (last renewed {since:.1f}s ago, "
                   f"renew deadline {self.renew_deadline:.1f}s)")
            raise LeaseLapsed(self._epoch, self._where(), why)

    def release(self) -> None:
        """Clear the holder so a standby takes over at once instead of after expiry."""
        with self._lock:
            if self._is_leader:
                self._set_leader(False, "released")
                self._clear_holder()

    def holder(self) -> str | None:
        """The Lease's holder as last read, for a standby's log line."""
        return self._observed[0] if self._observed else None

    def _where(self) -> str:
        return f"{self.namespace}/{self.name}"

    def _clear_holder(self) -> None:
        try:
            lease = self.api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=self.call_timeout
            )
            if lease.spec is not None and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = _micro_time(datetime.now(UTC))
                self.api.replace_namespaced_lease(
                    self.name, self.namespace, lease, _request_timeout=self.call_timeout
                )
        except Exception as e:
            # The lease simply expires after lease_seconds.
            _log.warning("lease_release_failed", lease=self.name, error=str(e))

    def _try(self, renewing: bool) -> bool:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        now_mono = self._clock()
        now = datetime.now(UTC)
        try:
            try:
                lease = self.api.read_namespaced_lease(
                    self.name, self.namespace, _request_timeout=self.call_timeout
                )
            except ApiException as e:
                if e.status != 404:
                    raise
                if renewing:  # deleted under us: someone else may have led since
                    return self._drop("the Lease was deleted")
                return self._create(client, now, now_mono)

            spec = lease.spec or client.V1LeaseSpec()
            holder = spec.holder_identity
            record = (holder, spec.renew_time, lease.metadata.resource_version)
            if record != self._observed:
                self._observed, self._observed_at = record, now_mono
            if renewing and holder != self.identity:
                return self._drop(f"lease held by {holder}" if holder else "lease cleared")
            observed_renew = now - timedelta(seconds=now_mono - self._observed_at)
            decision = lease_decision(holder, observed_renew, spec.lease_duration_seconds, now, self.identity)
            if decision == "wait":
                return False

            if decision == "acquire":
                spec.holder_identity = self.identity
                spec.acquire_time = _micro_time(now)
                spec.lease_transitions = (spec.lease_transitions or 0) + 1
            spec.renew_time = _micro_time(now)
            spec.lease_duration_seconds = self.lease_seconds
            lease.spec = spec
            # lease.metadata.resourceVersion is the one we read: a concurrent writer makes this 409.
            self.api.replace_namespaced_lease(
                self.name, self.namespace, lease, _request_timeout=self.call_timeout
            )
        except ApiException as e:
            if e.status == 409:
                # Someone else wrote first; whoever it was, we are not (or no longer) sure to lead.
                self._observed = None  # re-read and re-judge on the next call
                return self._drop("conflicting write to the lease")
            return self._on_error(e, now_mono)
        except Exception as e:  # connection refused, timeouts: urllib3 errors
            return self._on_error(e, now_mono)
        return self._won(now_mono, "acquired")

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
            self.api.create_namespaced_lease(self.namespace, lease, _request_timeout=self.call_timeout)
        except ApiException as e:
            if e.status == 409:  # created by another candidate between our read and create
                return False
            raise
        return self._won(now_mono, "created lease")

    def _won(self, now_mono: float, why: str) -> bool:
        """The Lease is ours as of ``now_mono``; a new leader first takes its fencing epoch."""
        self._last_renewed = now_mono
        if self._is_leader:
            return True
        if self._take_epoch is not None:
            try:
                self._epoch = self._take_epoch(self.identity)
            except Exception as e:  # the store is down: hold the Lease, lead once an epoch is taken
                _log.warning("leader_epoch_failed", elector="lease", lease=self._where(),
                             error=f"{type(e).__name__}: {e}")
                return False
        self._set_leader(True, why)
        return True

    def _drop(self, why: str) -> bool:
        if self._is_leader:
            self._set_leader(False, why)
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
            lease=self._where(),
            identity=self.identity,
            epoch=self._epoch,
            why=why,
        )
