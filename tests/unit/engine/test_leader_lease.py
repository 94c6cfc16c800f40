"""The Lease elector (``controller.engine.leader_lease``): the lease decision, the elector against an
in-memory Lease API with the API server's resourceVersion semantics, and fencing — the epoch taken
in a real (SQLite) state store on each win, the store refusing the old token, the renew-deadline
check before each fenced write, and a renewal that finds another holder. (The real kube-apiserver:
tests/integration/test_k8s_apiserver.py, test_leader_kube.py.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.engine.leader import elector_from_env
from controller.engine.leader_lease import LeaseElector, lease_decision
from controller.store.db import Store
from controller.store.fencing import EpochTaker, FencedOut, LeaseLapsed

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
        self.timeouts: list[float | None] = []

    def _check(self, timeout: float | None) -> None:
        self.timeouts.append(timeout)
        if self.s.down:
            raise ConnectionRefusedError("api server unreachable")

    def read_namespaced_lease(
        self, name: str, namespace: str, _request_timeout: float | None = None
    ) -> client.V1Lease:
        self._check(_request_timeout)
        if name not in self.s.leases:
            raise ApiException(status=404, reason="Not Found")
        return self.s.leases[name].model_copy(deep=True)

    def create_namespaced_lease(
        self, namespace: str, body: client.V1Lease, _request_timeout: float | None = None
    ) -> client.V1Lease:
        self._check(_request_timeout)
        name = body.metadata.name
        if name in self.s.leases:
            raise ApiException(status=409, reason="AlreadyExists")
        self.s.rv += 1
        body = body.model_copy(deep=True)
        body.metadata.resource_version = str(self.s.rv)
        self.s.leases[name] = body
        return body

    def replace_namespaced_lease(
        self, name: str, namespace: str, body: client.V1Lease, _request_timeout: float | None = None
    ) -> client.V1Lease:
        self._check(_request_timeout)
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


# --- fencing ----------------------------------------------------------------------------------


def fenced(store: LeaseStore, who: str, clock: Clock, url: str) -> LeaseElector:
    return LeaseElector("pipectl-controller", "pipectl", who, 15, api=store.api(), clock=clock,
                        take_epoch=EpochTaker(url))


def test_each_win_takes_a_new_epoch_and_the_store_refuses_the_old_token(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    leases, clock = LeaseStore(), Clock()
    a, b = fenced(leases, "pod-a", clock, url), fenced(leases, "pod-b", clock, url)
    store_a, store_b = Store(url), Store(url)
    assert a.acquire() is True and a.fencing_token == 1  # created the Lease: epoch 1
    assert b.acquire() is False and b.fencing_token is None
    store_a.fencing_token = a.fencing_token
    store_a.journal_begin("run-a", "r", "dev", "intent", "Topic/dev.t/create", "{}")

    clock.t += 16  # a is paused: no renewal; b takes the lease over and the next epoch
    assert b.acquire() is True and b.fencing_token == 2
    with pytest.raises(FencedOut, match="fencing token 1 is not the current leader epoch 2"):
        store_a.journal_end("intent", "Topic/dev.t/create", "done")
    store_b.fencing_token = b.fencing_token
    store_b.journal_begin("run-b", "r", "dev", "intent", "Topic/dev.u/create", "{}")
    rows = {r["action_id"]: (r["run_id"], r["state"]) for r in store_b.journal_rows("r")}
    assert rows == {"Topic/dev.t/create": ("run-a", "started"), "Topic/dev.u/create": ("run-b", "started")}
    assert a.renew() is False and a.fencing_token is None  # resumed: the lease is b's

    b.release()
    assert a.acquire() is True and a.fencing_token == 3  # a release and a re-win: a new epoch
    assert fenced(leases, "pod-a", clock, url).acquire() is True  # restarted, same identity
    assert a.renew() is True  # the lease record is still pod-a's; the old process keeps its token 3,
    with pytest.raises(FencedOut):  # but the store now knows only the restarted process's epoch 4
        store_a.fencing_token = a.fencing_token
        store_a.put_status("r", {"version": "x"})
    assert store_b.get_status("r") is None
    store_a.close()
    store_b.close()


def test_the_lease_without_an_epoch_is_not_leadership(tmp_path: Path) -> None:
    leases, clock = LeaseStore(), Clock()
    calls: list[str] = []

    def store_down(holder: str) -> int:
        calls.append(holder)
        raise ConnectionRefusedError("state store unreachable")

    a = LeaseElector("pipectl-controller", "pipectl", "pod-a", 15, api=leases.api(), clock=clock,
                     take_epoch=store_down)
    assert a.acquire() is False and not a.is_leader and a.fencing_token is None
    assert leases.leases["pipectl-controller"].spec.holder_identity == "pod-a"  # held, not led
    assert a.acquire() is False and calls == ["pod-a", "pod-a"]  # tried again on the next acquire
    a._take_epoch = EpochTaker(f"sqlite:///{tmp_path / 'state.db'}")
    clock.t += 2
    assert a.acquire() is True and a.fencing_token == 1


def test_past_the_renew_deadline_a_write_needs_a_renewal_that_finds_the_lease_still_ours(tmp_path: Path) -> None:
    leases, clock = LeaseStore(), Clock()
    a = fenced(leases, "pod-a", clock, f"sqlite:///{tmp_path / 'state.db'}")
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    assert a.acquire()
    store.fencing_token, store.fence_guard = a.fencing_token, a.check_held
    writes = leases.rv
    clock.t += 9.9  # within the renew deadline (10 s of a 15 s lease): no call to the API server
    store.journal_begin("run-a", "r", "dev", "intent", "a", "{}")
    assert leases.rv == writes
    clock.t += 5  # 14.9 s (a late keeper, a short pause): one renewal first, which finds it ours
    store.journal_end("intent", "a", "done")
    assert leases.rv == writes + 1 and a.is_leader

    clock.t += 12  # paused again, and now the API server cannot be reached: a steps down
    leases.down = True
    with pytest.raises(LeaseLapsed, match=r"no longer holds the Lease \(last renewed 12\.0s ago, renew deadline "
                                          r"10\.0s\) \(Lease pipectl/pipectl-controller\)"):
        store.journal_begin("run-a", "r", "dev", "intent", "b", "{}")
    assert not a.is_leader
    with pytest.raises(FencedOut):  # the executor's handling: a FencedOut like any other
        store.kv_put("rollout/r/dev", "{}")
    assert [r["action_id"] for r in store.journal_rows("r")] == ["a"] and store.kv_get("rollout/r/dev") is None
    store.close()


def test_past_the_renew_deadline_a_lease_taken_over_refuses_the_write(tmp_path: Path) -> None:
    leases, clock = LeaseStore(), Clock()
    a = fenced(leases, "pod-a", clock, f"sqlite:///{tmp_path / 'state.db'}")
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    assert a.acquire()
    store.fence_guard = a.check_held  # no token: the Lease check alone
    lease = leases.leases["pipectl-controller"]
    lease.spec.holder_identity = "pod-b"  # b took it over (without an epoch: only the Lease says so)
    store.put_status("r", {"version": "1"})  # within the deadline a does not know yet
    clock.t += 11
    with pytest.raises(LeaseLapsed, match="no longer holds the Lease"):
        store.put_status("r", {"version": "2"})
    assert store.get_status("r") == {"version": "1"} and not a.is_leader
    store.close()


def test_a_renewal_that_finds_another_holder_drops_leadership_at_once() -> None:
    leases, clock = LeaseStore(), Clock()
    a = elector(leases, "pod-a", clock)
    assert a.acquire()
    lease = leases.leases["pipectl-controller"]
    # Written behind a's back, and stale by any measure: a candidate would take it, a leader must not.
    lease.spec.holder_identity, lease.spec.lease_duration_seconds = "intruder", 0
    lease.metadata.resource_version = "99"
    assert a.renew() is False and not a.is_leader
    assert leases.leases["pipectl-controller"].spec.holder_identity == "intruder"
    assert a.acquire() is True  # as a candidate again it may take the expired lease (a new win)

    del leases.leases["pipectl-controller"]  # deleted under the leader: someone may have led since
    assert a.renew() is False and not a.is_leader and "pipectl-controller" not in leases.leases


def test_elector_from_env_lease_uses_kubeconfig_the_lock_seconds_and_the_state_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
    }))
    for k, v in {"PIPECTL_LEADER_ELECTION": "lease", "KUBECONFIG": str(kubeconfig), "POD_NAMESPACE": "ns1",
                 "POD_NAME": "pod-a", "PIPECTL_LEASE_NAME": "lease-x", "PIPECTL_LEADER_LOCK_SECONDS": "6"}.items():
        monkeypatch.setenv(k, v)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    e = elector_from_env(tmp_path, url)
    assert isinstance(e, LeaseElector)
    assert (e.name, e.namespace, e.identity, e.lease_seconds, e.renew_deadline) == ("lease-x", "ns1", "pod-a", 6, 4)
    assert e.api.api_client.configuration.host == "https://127.0.0.1:1"
    assert isinstance(e._take_epoch, EpochTaker) and e._take_epoch.url == url
    monkeypatch.setenv("PIPECTL_LEADER_LOCK_SECONDS", "3")
    with pytest.raises(ValueError, match="must be at least 5"):
        elector_from_env(tmp_path, url)


def test_every_api_call_is_bounded_well_inside_the_renew_deadline() -> None:
    """A hung call would hold the elector's lock, and every fenced write behind it, past the point
    where this instance should have stepped down: each call carries a timeout."""
    store, clock = LeaseStore(), Clock()
    api = LeaseApi(store)
    a = LeaseElector("pipectl-controller", "pipectl", "pod-a", 15, api=api, clock=clock)
    assert a.acquire()  # read (404), create
    clock.t += 11  # past the renew deadline (10 s): the write check renews first (read, replace)
    a.check_held()
    a.release()  # read, replace
    assert len(api.timeouts) == 6
    assert all(t is not None and 1.0 <= t <= a.renew_deadline / 3 for t in api.timeouts), api.timeouts
