"""Leader election: the file lock (real processes, real flock) and the Lease decision logic."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.engine.leader import (
    FileLockElector,
    LeadershipKeeper,
    LeaseElector,
    elector_from_env,
    lease_decision,
)
from controller.obs.metrics import REGISTRY

# --- FileLockElector ------------------------------------------------------------------------


def test_only_one_of_two_electors_acquires(tmp_path: Path) -> None:
    lock = tmp_path / "state" / "controller.lock"
    a = FileLockElector(lock, identity="ctl-a")
    b = FileLockElector(lock, identity="ctl-b")

    assert a.acquire() is True
    assert b.acquire() is False
    assert (a.is_leader, b.is_leader) == (True, False)
    assert a.renew() is True and b.renew() is False
    assert a.holder() == f"ctl-a {os.getpid()}"
    assert REGISTRY.get_sample_value("pipectl_leader", {"instance": "ctl-a"}) == 1
    a.release()


def test_release_lets_the_other_in(tmp_path: Path) -> None:
    lock = tmp_path / "controller.lock"
    a = FileLockElector(lock, identity="ctl-a")
    b = FileLockElector(lock, identity="ctl-b")
    assert a.acquire()
    a.release()

    assert not a.is_leader
    assert REGISTRY.get_sample_value("pipectl_leader", {"instance": "ctl-a"}) == 0
    assert b.acquire() is True
    assert b.holder() == f"ctl-b {os.getpid()}"
    assert a.acquire() is False
    b.release()


def test_acquire_twice_is_idempotent(tmp_path: Path) -> None:
    a = FileLockElector(tmp_path / "l", identity="ctl-a")
    assert a.acquire() and a.acquire()
    a.release()
    a.release()


def test_a_killed_holder_frees_the_lock(tmp_path: Path) -> None:
    lock = tmp_path / "controller.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import sys, time
                from controller.engine.leader import FileLockElector
                from controller.obs.logging import configure_logging
                configure_logging()  # logs to stderr; stdout carries the answer
                e = FileLockElector({str(lock)!r}, identity="doomed")
                print("locked" if e.acquire() else "not locked", flush=True)
                time.sleep(60)
            """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        me = FileLockElector(lock, identity="survivor")
        assert me.acquire() is False
        assert me.holder() == f"doomed {holder.pid}"

        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)

        assert me.acquire() is True
        assert me.holder() == f"survivor {os.getpid()}"
        me.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_a_replaced_lock_file_means_leadership_is_lost(tmp_path: Path) -> None:
    lock = tmp_path / "controller.lock"
    a = FileLockElector(lock, identity="ctl-a")
    assert a.acquire()
    lock.unlink()  # someone "cleaned up" the state dir; a new process could now lock a new file
    b = FileLockElector(lock, identity="ctl-b")
    assert b.acquire() is True

    assert a.renew() is False
    assert not a.is_leader
    b.release()


def test_elector_from_env_defaults_to_the_file_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIPECTL_LEADER_ELECTION", raising=False)
    e = elector_from_env(tmp_path)
    assert isinstance(e, FileLockElector) and e.path == tmp_path / "controller.lock"


def test_keeper_reports_a_lost_lock(tmp_path: Path) -> None:
    lock = tmp_path / "controller.lock"
    a = FileLockElector(lock, identity="ctl-a")
    assert a.acquire()
    lost = threading.Event()
    keeper = LeadershipKeeper(a, lost.set, period=0.01)
    keeper.start()
    assert not lost.wait(0.1)
    lock.unlink()
    assert lost.wait(5)
    keeper.stop()


# --- lease_decision -------------------------------------------------------------------------

T0 = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("holder", "renewed", "duration", "now", "expected"),
    [
        (None, None, None, T0, "acquire"),  # no holder
        ("", T0, 15, T0, "acquire"),  # released
        ("me", T0, 15, T0 + timedelta(seconds=60), "renew"),  # mine, even if late
        ("other", T0, 15, T0 + timedelta(seconds=5), "wait"),  # live
        ("other", T0, 15, T0 + timedelta(seconds=14.9), "wait"),
        ("other", T0, 15, T0 + timedelta(seconds=15), "acquire"),  # expired exactly
        ("other", T0, 15, T0 + timedelta(seconds=300), "acquire"),
        ("other", None, 15, T0, "acquire"),  # never renewed
        ("other", T0, None, T0, "acquire"),  # no duration
        ("other", T0, 0, T0, "acquire"),
        ("other", T0 + timedelta(seconds=30), 15, T0, "wait"),  # renew time in our future
    ],
)
def test_lease_decision(
    holder: str | None, renewed: datetime | None, duration: float | None, now: datetime, expected: str
) -> None:
    assert lease_decision(holder, renewed, duration, now, "me") == expected


# --- LeaseElector against an in-memory Lease API (resourceVersion semantics only) -------------


class LeaseStore:
    """One namespace's Leases with the API server's optimistic concurrency: replace needs the
    resourceVersion that was read, else 409; create of an existing name is 409."""

    def __init__(self) -> None:
        self.leases: dict[str, client.V1Lease] = {}
        self.rv = 0
        self.down = False
        self.before_replace: list[object] = []

    def api(self) -> LeaseApi:
        return LeaseApi(self)


class LeaseApi:
    def __init__(self, store: LeaseStore) -> None:
        self.s = store

    def _check(self) -> None:
        if self.s.down:
            raise ConnectionRefusedError("api server unreachable")

    def read_namespaced_lease(self, name: str, namespace: str) -> client.V1Lease:
        self._check()
        if name not in self.s.leases:
            raise ApiException(status=404, reason="Not Found")
        return self.s.leases[name].model_copy(deep=True)

    def create_namespaced_lease(self, namespace: str, body: client.V1Lease) -> client.V1Lease:
        self._check()
        name = body.metadata.name
        if name in self.s.leases:
            raise ApiException(status=409, reason="AlreadyExists")
        self.s.rv += 1
        body = body.model_copy(deep=True)
        body.metadata.resource_version = str(self.s.rv)
        self.s.leases[name] = body
        return body

    def replace_namespaced_lease(self, name: str, namespace: str, body: client.V1Lease) -> client.V1Lease:
        self._check()
        while self.s.before_replace:
            hook = self.s.before_replace.pop()
            assert callable(hook)
            hook()
        if body.metadata.resource_version != self.s.leases[name].metadata.resource_version:
            raise ApiException(status=409, reason="Conflict")
        self.s.rv += 1
        body = body.model_copy(deep=True)
        body.metadata.resource_version = str(self.s.rv)
        self.s.leases[name] = body
        return body


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def elector(store: LeaseStore, who: str, clock: Clock) -> LeaseElector:
    return LeaseElector("pipectl-controller", "pipectl", who, 15, api=store.api(), clock=clock)


def test_lease_first_candidate_creates_and_leads_the_other_waits() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = elector(store, "pod-a", clock), elector(store, "pod-b", clock)

    assert a.acquire() is True
    assert b.acquire() is False
    lease = store.leases["pipectl-controller"]
    assert lease.spec.holder_identity == "pod-a" and lease.spec.lease_duration_seconds == 15

    clock.t += 5
    assert a.renew() is True
    assert b.acquire() is False


def test_lease_serialised_times_have_six_fraction_digits() -> None:
    store, clock = LeaseStore(), Clock()
    assert elector(store, "pod-a", clock).acquire()
    body = client.ApiClient().sanitize_for_serialization(store.leases["pipectl-controller"])
    assert len(body["spec"]["renewTime"].split(".")[1].split("+")[0]) == 6


def test_lease_is_taken_over_after_the_holder_stops_renewing() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = elector(store, "pod-a", clock), elector(store, "pod-b", clock)
    assert a.acquire()
    assert b.acquire() is False  # b observes a's record now

    clock.t += 14
    assert b.acquire() is False
    clock.t += 2  # 16 s without a change to the record: expired
    assert b.acquire() is True

    lease = store.leases["pipectl-controller"]
    assert lease.spec.holder_identity == "pod-b" and lease.spec.lease_transitions == 1
    assert a.renew() is False and not a.is_leader  # a woke up: the lease is b's now


def test_a_renewing_holder_is_never_taken_over() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = elector(store, "pod-a", clock), elector(store, "pod-b", clock)
    assert a.acquire()
    for _ in range(10):
        clock.t += 10
        assert b.acquire() is False
        assert a.renew() is True


def test_two_candidates_racing_for_an_expired_lease_only_one_wins() -> None:
    store, clock = LeaseStore(), Clock()
    dead, b, c = (
        elector(store, "pod-dead", clock),
        elector(store, "pod-b", clock),
        elector(store, "pod-c", clock),
    )
    assert dead.acquire()
    assert not b.acquire() and not c.acquire()
    clock.t += 20

    # c writes between b's read and b's replace
    store.before_replace.append(lambda: c.acquire())
    assert b.acquire() is False
    assert c.is_leader
    assert store.leases["pipectl-controller"].spec.holder_identity == "pod-c"


def test_release_hands_over_at_once() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = elector(store, "pod-a", clock), elector(store, "pod-b", clock)
    assert a.acquire()
    a.release()
    assert not a.is_leader
    assert b.acquire() is True


def test_leader_survives_a_short_api_outage_and_steps_down_before_expiry() -> None:
    store, clock = LeaseStore(), Clock()
    a = elector(store, "pod-a", clock)
    assert a.acquire()
    store.down = True
    clock.t += 5
    assert a.renew() is True  # within the renew deadline (10 s of a 15 s lease)
    clock.t += 6
    assert a.renew() is False and not a.is_leader  # 11 s: gone before anyone may take over at 15 s
    store.down = False
    assert a.acquire() is True  # its own record: it may lead again


def test_restarted_pod_with_the_same_identity_resumes_leadership() -> None:
    store, clock = LeaseStore(), Clock()
    assert elector(store, "pod-a", clock).acquire()
    assert elector(store, "pod-a", clock).acquire() is True
