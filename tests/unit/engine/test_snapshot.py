"""The pass-wide live-state snapshot (``controller.engine.snapshot``): one read per scope whatever
the number of releases, answers equal to per-release reads, and never a state older than a write."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import pytest

from controller.engine.snapshot import InvalidatingAdapter, LiveSnapshot
from controller.engine.stage_ops import StageOps
from controller.plan.actions import Action, Op
from controller.plan.resources import (
    DagResource,
    DatabaseResource,
    Resource,
    ResourceKind,
    TableResource,
    TopicResource,
    TransformResource,
)
from tests.unit.engine.world import Clock, FakeBackend

K = ResourceKind


class ScopedBackend(FakeBackend):
    """A FakeBackend that also implements ``ScopedObserver`` (Hive-like scopes per database)."""

    load_hook: object = None

    def snapshot_scope(self, kind: ResourceKind, name: str) -> str | None:
        if kind in (K.TABLE, K.VIEW):
            return "db:" + name.split(".")[0]
        return None if kind is K.TRANSFORM else str(kind)

    def observe_scope(self, scope: str) -> Mapping[tuple[ResourceKind, str], Resource]:
        self._read("observe_scope")
        if callable(self.load_hook):
            self.load_hook()
        return {k: v for k, v in self.live.items() if self.snapshot_scope(*k) == scope}


def _world(n: int, clock: Clock) -> tuple[dict[ResourceKind, FakeBackend], list[list[Resource]]]:
    """``n`` releases, each with a topic, a database (3 shared ones), a table and a DAG."""
    kafka = ScopedBackend("kafka", {K.TOPIC}, clock)
    hive = ScopedBackend("hive", {K.DATABASE, K.TABLE}, clock)
    airflow = ScopedBackend("airflow", {K.DAG}, clock)
    transforms = FakeBackend("transforms", {K.TRANSFORM}, clock)
    releases = []
    for i in range(n):
        db = f"db{i % 3}"
        res: list[Resource] = [
            TopicResource(name=f"t{i}", partitions=1 + i % 4, replication_factor=1),
            DatabaseResource(name=db),
            TableResource(name=f"{db}.tab{i}", columns=[]),
            DagResource(name=f"dag{i}", file_name=f"dag{i}.py", source_digest="d", version="1.0.0"),
        ]
        for r in res[:3] if i % 5 else res[:2]:  # some tables and DAGs are missing: absent from both reads
            (kafka if r.kind == K.TOPIC else hive).live[(K(r.kind), r.name)] = r
        airflow.live[(K.DAG, f"dag{i}")] = res[3]
        releases.append(res)
    adapters: dict[ResourceKind, FakeBackend] = {
        K.TOPIC: kafka,
        K.DATABASE: hive,
        K.TABLE: hive,
        K.DAG: airflow,
        K.TRANSFORM: transforms,
    }
    return adapters, releases


def _calls(adapters: Mapping[ResourceKind, FakeBackend]) -> dict[str, int]:
    return {a.backend: a.stats.total for a in {id(a): a for a in adapters.values()}.values()}


def test_calls_per_pass_do_not_grow_with_releases_and_equal_per_release_reads() -> None:
    per_n = {}
    for n in (10, 100):
        clock = Clock()
        adapters, releases = _world(n, clock)
        snap = LiveSnapshot(clock, StageOps.observe_adapters)
        batched = [snap.observe(adapters, desired) for desired in releases]
        per_n[n] = _calls(adapters)
        direct = [StageOps.observe_adapters(adapters, desired) for desired in releases]
        assert batched == direct
        assert sum(len(b) for b in batched) > 3 * n  # the comparison compared something
    # Kafka 1, Airflow 1, Hive 1 (databases) + 1 per database (3)
    assert per_n[10] == per_n[100] == {"kafka": 1, "hive": 4, "airflow": 1, "transforms": 0}


def test_a_kind_without_scopes_is_observed_directly() -> None:
    clock = Clock()
    adapters, _ = _world(1, clock)
    t = TransformResource(name="tr", materialized="table", compiled_sql_digest="x")
    adapters[K.TRANSFORM].live[(K.TRANSFORM, "tr")] = t
    snap = LiveSnapshot(clock, StageOps.observe_adapters)
    assert snap.observe(adapters, [t, t.model_copy()]) == {("Transform", "tr"): t}
    assert adapters[K.TRANSFORM].stats.calls == {"observe": 1}


def test_a_write_through_the_executor_drops_the_adapters_entries() -> None:
    clock = Clock()
    adapters, releases = _world(3, clock)
    snap = LiveSnapshot(clock, StageOps.observe_adapters)
    snap.observe(adapters, releases[1])
    kafka = adapters[K.TOPIC]
    bigger = TopicResource(name="t1", partitions=9, replication_factor=1)
    action = Action(kind=K.TOPIC, name="t1", op=Op.UPDATE, desired=bigger, reason="more partitions")
    InvalidatingAdapter(kafka, snap).apply(action)
    assert snap.observe(adapters, releases[1])[("Topic", "t1")] == bigger
    assert kafka.stats.calls["observe_scope"] == 2
    assert adapters[K.DAG].stats.calls["observe_scope"] == 1  # other adapters keep their entries


def test_a_write_to_one_table_drops_only_its_database_and_a_database_write_drops_all() -> None:
    """At 1,000 releases one release's table change dropped every database's entry, and the next
    sweep read all of them again."""
    clock = Clock()
    adapters, releases = _world(6, clock)  # databases db0-db2, two releases each
    snap = LiveSnapshot(clock, StageOps.observe_adapters)
    _pass(snap, adapters, releases)
    hive = adapters[K.TABLE]
    before = hive.stats.calls["observe_scope"]
    table = TableResource(name="db1.tab1", columns=[], properties={"pipectl.version": "2"})
    InvalidatingAdapter(hive, snap).apply(Action(kind=K.TABLE, name="db1.tab1", op=Op.UPDATE, desired=table,
                                                 reason="new version"))
    assert _pass(snap, adapters, releases) == [StageOps.observe_adapters(adapters, d) for d in releases]
    assert hive.stats.calls["observe_scope"] == before + 1  # db1 alone, read again once
    assert snap.observe(adapters, releases[1])[("Table", "db1.tab1")] == table
    db = DatabaseResource(name="db3")
    InvalidatingAdapter(hive, snap).apply(Action(kind=K.DATABASE, name="db3", op=Op.CREATE, desired=db,
                                                 reason="new database"))
    before = hive.stats.calls["observe_scope"]
    _pass(snap, adapters, releases)
    assert hive.stats.calls["observe_scope"] == before + 4  # the database list and db0-db2


def test_a_read_of_a_scope_in_flight_during_a_write_to_it_is_not_kept() -> None:
    clock = Clock()
    adapters, releases = _world(3, clock)
    snap = LiveSnapshot(clock, StageOps.observe_adapters)
    hive = adapters[K.TABLE]
    assert isinstance(hive, ScopedBackend)
    hive.load_hook = lambda: snap.invalidate(hive, "db:db1")  # another worker writes db1 meanwhile
    snap.observe(adapters, releases[1])
    hive.load_hook = None
    calls = hive.stats.calls["observe_scope"]
    snap.observe(adapters, releases[1])
    snap.observe(adapters, releases[1])
    assert hive.stats.calls["observe_scope"] == calls + 1  # db1 again (then kept); the rest kept


def test_a_read_in_flight_during_a_write_is_not_kept() -> None:
    clock = Clock()
    adapters, releases = _world(3, clock)
    snap = LiveSnapshot(clock, StageOps.observe_adapters)
    kafka = adapters[K.TOPIC]
    assert isinstance(kafka, ScopedBackend)
    # a write of another worker lands while this read is in flight
    kafka.load_hook = lambda: snap.invalidate(kafka)
    snap.observe(adapters, releases[0])
    kafka.load_hook = None
    snap.observe(adapters, releases[0])
    snap.observe(adapters, releases[0])
    assert kafka.stats.calls["observe_scope"] == 2  # the racing read was not stored; the next one is


def test_entries_expire_after_the_ttl_on_the_injected_clock() -> None:
    clock = Clock()
    adapters, releases = _world(3, clock)
    snap = LiveSnapshot(clock, StageOps.observe_adapters, ttl=timedelta(seconds=5))
    snap.observe(adapters, releases[0])
    clock.advance(4.9)
    snap.observe(adapters, releases[0])
    assert adapters[K.TOPIC].stats.calls["observe_scope"] == 1
    clock.advance(0.2)
    snap.observe(adapters, releases[0])
    assert adapters[K.TOPIC].stats.calls["observe_scope"] == 2
    clock.advance(-60)  # a clock that went back never serves an entry "from the future"
    snap.observe(adapters, releases[0])
    assert adapters[K.TOPIC].stats.calls["observe_scope"] == 3


def test_concurrent_workers_share_one_load_per_scope() -> None:
    clock = Clock()
    adapters, releases = _world(20, clock)
    snap = LiveSnapshot(clock, StageOps.observe_adapters)
    kafka = adapters[K.TOPIC]
    assert isinstance(kafka, ScopedBackend)
    kafka.load_hook = lambda: time.sleep(0.05)  # a slow backend: the other workers arrive meanwhile
    results: dict[int, object] = {}

    def worker(i: int) -> None:
        results[i] = snap.observe(adapters, releases[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert kafka.stats.calls["observe_scope"] == 1
    assert results == {i: StageOps.observe_adapters(adapters, releases[i]) for i in range(20)}


def test_a_prefetched_scope_lives_for_the_whole_pass_and_not_past_the_next() -> None:
    """A pass over many releases outlasts ``ttl``: its last releases still read what the prefetch
    loaded for them (bench_scale at 1,000 releases read 804 databases twice before this)."""
    clock = Clock()
    adapters, releases = _world(9, clock)
    snap = LiveSnapshot(clock, StageOps.observe_adapters, ttl=timedelta(seconds=5), pass_ttl=timedelta(seconds=60))
    _pass(snap, adapters, releases)  # on demand: the scopes the releases read are remembered
    first = _calls(adapters)
    snap.clear()
    snap.prefetch(f"r{i}" for i in range(9))
    _drain(snap)
    prefetched = _calls(adapters)
    assert prefetched == {k: 2 * v for k, v in first.items()}
    clock.advance(40)  # 8 ttls into the pass
    batched = _pass(snap, adapters, releases)
    assert _calls(adapters) == prefetched  # nothing read again
    assert batched == [StageOps.observe_adapters(adapters, d) for d in releases]
    prefetched = _calls(adapters)  # the direct reads of the line above
    clock.advance(25)  # past pass_ttl with no new pass: read again
    snap.observe(adapters, releases[0], "r0")
    assert _calls(adapters)["kafka"] == prefetched["kafka"] + 1
    snap.clear()  # the next pass never sees the previous pass's entries
    snap.observe(adapters, releases[0], "r0")
    assert _calls(adapters)["kafka"] == prefetched["kafka"] + 2
    clock.advance(6)  # an on-demand entry keeps ttl
    snap.observe(adapters, releases[0], "r0")
    assert _calls(adapters)["kafka"] == prefetched["kafka"] + 3


def _drain(snap: LiveSnapshot) -> None:
    """Wait for the prefetch threads' loads (then every count below is final)."""
    assert snap.wait_prefetched(timeout=10)


def _pass(
    snap: LiveSnapshot, adapters: Mapping[ResourceKind, FakeBackend], releases: list[list[Resource]]
) -> list[dict[tuple[str, str], object]]:
    return [snap.observe(adapters, desired, f"r{i}") for i, desired in enumerate(releases)]


def test_a_prefetch_reads_the_due_releases_scopes_side_by_side() -> None:
    clock = Clock()
    adapters, releases = _world(9, clock)
    snap = LiveSnapshot(clock, StageOps.observe_adapters)
    _pass(snap, adapters, releases)  # pass 1 reads one scope after another
    first = _calls(adapters)
    hive = adapters[K.TABLE]
    assert isinstance(hive, ScopedBackend)
    running, most, where = [0], [0], set()
    lock = threading.Lock()

    def slow() -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            where.add(threading.current_thread().name.split("_")[0])
        time.sleep(0.1)
        with lock:
            running[0] -= 1

    hive.load_hook = slow
    snap.clear()  # pass 2, every release due
    snap.prefetch(f"r{i}" for i in range(9))
    batched = _pass(snap, adapters, releases)
    _drain(snap)
    assert _calls(adapters) == {k: 2 * v for k, v in first.items()}  # each scope still read once
    assert batched == [StageOps.observe_adapters(adapters, desired) for desired in releases]
    assert where == {"pipectl-prefetch"} and most[0] >= 2  # Hive's 4 scopes were read side by side


def test_a_prefetch_for_one_release_reads_only_its_scopes() -> None:
    clock = Clock()
    adapters, releases = _world(9, clock)
    snap = LiveSnapshot(clock, StageOps.observe_adapters)
    _pass(snap, adapters, releases)
    first = _calls(adapters)
    snap.clear()
    snap.clear()  # a refresh with no pass in between: r1 still has its scopes of its last pass
    snap.prefetch(["r1", "unknown"])
    _drain(snap)
    # r1: its topic, the database list and db1, its DAG; not db0 or db2
    assert _calls(adapters) == {
        **first,
        "kafka": first["kafka"] + 1,
        "hive": first["hive"] + 2,
        "airflow": first["airflow"] + 1,
    }
    snap.observe(adapters, releases[1], "r1")
    assert _calls(adapters)["hive"] == first["hive"] + 2  # r1's pass read nothing more


def test_no_prefetch_when_switched_off() -> None:
    clock = Clock()
    adapters, releases = _world(9, clock)
    snap = LiveSnapshot(clock, StageOps.observe_adapters, prefetch=0)
    _pass(snap, adapters, releases)
    first = _calls(adapters)
    snap.clear()
    snap.prefetch(f"r{i}" for i in range(9))
    assert snap._pool is None and _calls(adapters) == first


def test_a_prefetch_that_fails_or_races_a_write_is_not_stored() -> None:
    """A failed load is not stored; its error is given to the scope's readers for ttl, then the
    scope is read again. A load that raced a write is not stored either."""
    clock = Clock()
    adapters, releases = _world(9, clock)
    snap = LiveSnapshot(clock, StageOps.observe_adapters)
    _pass(snap, adapters, releases)
    kafka, hive = adapters[K.TOPIC], adapters[K.TABLE]
    assert isinstance(kafka, ScopedBackend) and isinstance(hive, ScopedBackend)

    def hive_down() -> None:
        raise ConnectionError("metastore unreachable")

    def kafka_written() -> None:  # another worker's write lands while the prefetch reads
        snap.invalidate(kafka)

    hive.load_hook, kafka.load_hook = hive_down, kafka_written
    snap.clear()
    snap.prefetch(f"r{i}" for i in range(9))
    _drain(snap)
    hive.load_hook = kafka.load_hook = None
    hive_before, kafka_before = _calls(adapters)["hive"], _calls(adapters)["kafka"]
    # within ttl a reader of a failed scope gets the prefetch's error, without reading again
    with pytest.raises(ConnectionError, match="metastore unreachable"):
        snap.observe(adapters, releases[0], "r0")
    assert _calls(adapters)["hive"] == hive_before
    # the racing Kafka read was not stored: read again, by a release of this pass, for the pass
    assert _calls(adapters)["kafka"] == kafka_before + 1
    clock.advance(snap.ttl.total_seconds())  # then it is read again
    before = _calls(adapters)
    batched = _pass(snap, adapters, releases)
    after = _calls(adapters)
    assert batched == [StageOps.observe_adapters(adapters, desired) for desired in releases]
    # the failed Hive scopes (databases, db0-db2) are read again; Kafka's reread lives for the pass
    assert after["hive"] - before["hive"] == 4 and after["kafka"] == before["kafka"]
    assert after["airflow"] == before["airflow"]  # a good prefetch is used as it is


class ListingBackend(ScopedBackend):
    """A ScopedBackend that is also a ``ScopeLister`` (Hive on the metastore path): one listing for
    every ``db:`` scope, then a load per scope that uses its part of the listing."""

    list_hook: object = None

    def list_scopes(self, scopes: Sequence[str]) -> dict[str, list[str]] | None:
        self._read("list_scopes")
        if callable(self.list_hook):
            self.list_hook()
        dbs = [s for s in scopes if s.startswith("db:")]
        return {s: sorted(n for k, n in self.live if k is K.TABLE and "db:" + n.split(".")[0] == s) for s in dbs}

    def observe_scope_with(self, scope: str, hint: Any) -> Mapping[tuple[ResourceKind, str], Resource]:
        self._read("observe_scope_with")
        listed = set(hint)
        return {k: v for k, v in self.live.items() if k[1] in listed or (k[0] is K.DATABASE and scope == "db")}


def _listing_world(clock: Clock) -> tuple[dict[ResourceKind, FakeBackend], list[list[Resource]], ListingBackend]:
    adapters, releases = _world(9, clock)
    old = adapters[K.TABLE]
    hive = ListingBackend("hive", {K.DATABASE, K.TABLE}, clock)
    hive.live = old.live
    adapters[K.TABLE] = adapters[K.DATABASE] = hive
    return adapters, releases, hive


def _warm(snap: LiveSnapshot, adapters: Mapping[ResourceKind, FakeBackend], releases: list[list[Resource]]) -> None:
    _pass(snap, adapters, releases)  # on demand: each release's scopes are remembered
    for a in {id(a): a for a in adapters.values()}.values():
        a.stats.reset()
    snap.clear()


def test_a_lister_is_listed_once_per_prefetch_then_read_once_per_scope() -> None:
    clock = Clock()
    adapters, releases, hive = _listing_world(clock)
    snap = LiveSnapshot(clock, StageOps.observe_adapters)
    _warm(snap, adapters, releases)
    snap.prefetch(f"r{i}" for i in range(9))
    _drain(snap)
    batched = _pass(snap, adapters, releases)
    # 1 listing of db0-db2, 1 load of each with its names, and the database list as before
    assert hive.stats.calls == {"list_scopes": 1, "observe_scope_with": 3, "observe_scope": 1}
    assert batched == [StageOps.observe_adapters(adapters, desired) for desired in releases]


def test_a_release_asking_during_the_listing_waits_for_it_and_uses_it() -> None:
    clock = Clock()
    adapters, releases, hive = _listing_world(clock)
    snap = LiveSnapshot(clock, StageOps.observe_adapters)
    _warm(snap, adapters, releases)
    got: list[dict[tuple[str, str], object]] = []
    reader = threading.Thread(target=lambda: got.append(snap.observe(adapters, releases[4], "r4")))

    def listing() -> None:  # r4's pass starts while the listing is on the wire
        reader.start()
        time.sleep(0.2)

    hive.list_hook = listing
    snap.prefetch(f"r{i}" for i in range(9))
    _drain(snap)
    reader.join(timeout=5)
    hive.list_hook = None
    assert hive.stats.calls == {"list_scopes": 1, "observe_scope_with": 3, "observe_scope": 1}
    assert got == [StageOps.observe_adapters(adapters, releases[4])]


def test_a_write_during_the_listing_or_a_failed_listing_loads_each_scope_as_usual() -> None:
    clock = Clock()
    adapters, releases, hive = _listing_world(clock)
    snap = LiveSnapshot(clock, StageOps.observe_adapters)
    _warm(snap, adapters, releases)

    def written() -> None:  # the listing may miss this write: no load may use it
        hive.live[(K.TABLE, "db1.late")] = TableResource(name="db1.late", columns=[])
        snap.invalidate(hive)

    hive.list_hook = written
    snap.prefetch(f"r{i}" for i in range(9))
    _drain(snap)
    assert hive.stats.calls == {"list_scopes": 1, "observe_scope": 4}
    late = [TableResource(name="db1.late", columns=[])]
    assert snap.observe(adapters, late) == {("Table", "db1.late"): late[0]}

    def down() -> None:
        raise ConnectionError("metastore unreachable")

    hive.stats.reset()
    hive.list_hook = down
    snap.clear()
    snap.prefetch(f"r{i}" for i in range(9))
    _drain(snap)
    assert hive.stats.calls == {"list_scopes": 1, "observe_scope": 4}
    assert _pass(snap, adapters, releases) == [StageOps.observe_adapters(adapters, d) for d in releases]


def test_a_hint_is_used_once_and_never_after_the_ttl() -> None:
    clock = Clock()
    adapters, releases, hive = _listing_world(clock)
    snap = LiveSnapshot(clock, StageOps.observe_adapters, ttl=timedelta(seconds=5))
    _warm(snap, adapters, releases)
    snap._pool = None  # the listing alone, no loads queued
    snap._prefetch_listed(hive, ["db:db0"])
    clock.advance(6)
    snap.observe(adapters, releases[0], "r0")  # the database list, and db0: its hint is too old
    snap._prefetch_listed(hive, ["db:db1"])
    snap.observe(adapters, releases[1], "r1")  # db1: its hint is used
    snap.clear()
    snap.observe(adapters, releases[1], "r1")  # once
    assert hive.stats.calls == {"list_scopes": 2, "observe_scope": 4, "observe_scope_with": 1}


def test_readers_waiting_on_a_failing_load_get_its_error_and_no_read_of_their_own() -> None:
    """A backend that is down and slow to say so (a client's retries): the readers that wait on
    the load, and those that come within ttl, fail with its error; the backend is read once."""
    clock = Clock()
    adapters, releases = _world(3, clock)
    kafka = adapters[K.TOPIC]
    assert isinstance(kafka, ScopedBackend)
    snap = LiveSnapshot(clock, StageOps.observe_adapters)
    entered, release = threading.Event(), threading.Event()

    def down_slowly() -> None:
        entered.set()
        assert release.wait(10)
        raise ConnectionError("kafka: broker transport failure")

    kafka.load_hook = down_slowly
    errors: list[str] = []

    def read(i: int) -> None:
        try:
            snap.observe(adapters, releases[i], f"r{i}")
        except ConnectionError as e:
            errors.append(str(e))

    first = threading.Thread(target=read, args=(0,))
    first.start()
    assert entered.wait(10)
    waiting = [threading.Thread(target=read, args=(i,)) for i in (1, 2)]
    for t in waiting:
        t.start()
    time.sleep(0.2)  # both wait on the load in flight
    release.set()
    for t in [first, *waiting]:
        t.join(10)
    assert errors == ["kafka: broker transport failure"] * 3
    assert kafka.stats.calls.get("observe_scope") == 1
    snap.clear()  # a new pass (the controller refreshes every few seconds): the backend is still down
    with pytest.raises(ConnectionError):
        snap.observe(adapters, releases[0], "r0")
    assert kafka.stats.calls.get("observe_scope") == 1
    kafka.load_hook = None
    snap.invalidate(kafka)  # a write: the scope is read again at once
    assert snap.observe(adapters, releases[0], "r0") == StageOps.observe_adapters(adapters, releases[0])


def _topics_only(kafka: ScopedBackend, n: int) -> list[list[Resource]]:
    """``n`` releases of one topic each, all live."""
    releases: list[list[Resource]] = []
    for i in range(n):
        t = TopicResource(name=f"t{i}", partitions=1, replication_factor=1)
        kafka.live[(K.TOPIC, t.name)] = t
        releases.append([t])
    return releases


def _big_topics(
    monkeypatch: pytest.MonkeyPatch, call: int
) -> tuple[ScopedBackend, list[list[Resource]], dict[ResourceKind, FakeBackend], LiveSnapshot]:
    """40 releases of one topic each on a scope counted as big from 20 entries (a narrow read's
    round trip counted as ``call`` names), and the first sweep over all of them started."""
    monkeypatch.setattr("controller.engine.snapshot.NARROW_MIN", 20)
    monkeypatch.setattr("controller.engine.snapshot.NARROW_CALL", call)
    clock = Clock()
    kafka = ScopedBackend("kafka", {K.TOPIC}, clock)
    releases = _topics_only(kafka, 40)
    snap = LiveSnapshot(clock, StageOps.observe_adapters)
    snap.prefetch(f"r{i}" for i in range(40))  # the first sweep: nothing known yet
    return kafka, releases, {K.TOPIC: kafka}, snap


def test_a_few_names_of_a_big_scope_are_read_narrowly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a scope is known to be big, a release outside a sweep (a requeue waiting on another
    backend) reads its own names, not the whole scope; a sweep over most releases reads it whole,
    and a sweep over a few of them reads narrowly too. Answers are the same either way."""
    kafka, releases, adapters, snap = _big_topics(monkeypatch, call=0)
    _pass(snap, adapters, releases)
    assert kafka.stats.calls == {"observe_scope": 1}

    snap.clear()  # a requeue between sweeps, outside any prefetch: its own topic only
    assert snap.observe(adapters, releases[3], "r3") == StageOps.observe_adapters(adapters, releases[3])
    assert kafka.stats.calls == {"observe_scope": 1, "observe": 2}  # the line above read directly too

    snap.clear()  # a sweep of 5 releases out of 40: 5 names of 40, each reads its own
    snap.prefetch(f"r{i}" for i in range(5))
    _drain(snap)
    live = [snap.observe(adapters, releases[i], f"r{i}") for i in range(5)]
    assert live == [StageOps.observe_adapters(adapters, releases[i]) for i in range(5)]
    assert kafka.stats.calls["observe_scope"] == 1

    snap.clear()  # a sweep of every release: read whole once, by the prefetch
    snap.prefetch(f"r{i}" for i in range(40))
    _drain(snap)
    before = dict(kafka.stats.calls)
    assert _pass(snap, adapters, releases) == [StageOps.observe_adapters(adapters, d) for d in releases]
    # the snapshot read nothing directly (the 40 direct reads are the comparison's)
    assert kafka.stats.calls["observe_scope"] == 2 and kafka.stats.calls["observe"] == before["observe"] + 40


def test_a_small_scope_is_always_read_whole() -> None:
    """Below ``NARROW_MIN`` entries a whole read is cheap: a lone release reads it whole, once."""
    clock = Clock()
    kafka = ScopedBackend("kafka", {K.TOPIC}, clock)
    releases = _topics_only(kafka, 40)
    snap = LiveSnapshot(clock, StageOps.observe_adapters)
    _pass(snap, {K.TOPIC: kafka}, releases)
    snap.clear()
    snap.observe({K.TOPIC: kafka}, releases[3], "r3")
    assert kafka.stats.calls == {"observe_scope": 2}


def test_an_on_demand_load_by_a_release_of_the_sweep_lives_for_the_pass() -> None:
    """The controller's first pass has nothing to prefetch: what its releases load on demand
    lives for the pass (``pass_ttl``), not ``ttl``; a release outside the sweep keeps ``ttl``."""
    clock = Clock()
    kafka = ScopedBackend("kafka", {K.TOPIC}, clock)
    releases = _topics_only(kafka, 10)
    adapters: dict[ResourceKind, FakeBackend] = {K.TOPIC: kafka}
    snap = LiveSnapshot(clock, StageOps.observe_adapters, ttl=timedelta(seconds=5), pass_ttl=timedelta(seconds=60))
    snap.prefetch(f"r{i}" for i in range(5))
    snap.observe(adapters, releases[0], "r0")
    clock.advance(30)
    snap.observe(adapters, releases[4], "r4")
    assert kafka.stats.calls == {"observe_scope": 1}
    snap.clear()
    snap.observe(adapters, releases[7], "r7")  # no sweep: an on-demand entry keeps ttl
    clock.advance(6)
    snap.observe(adapters, releases[8], "r8")
    assert kafka.stats.calls == {"observe_scope": 3}


def test_narrow_reads_that_add_up_to_a_whole_read_load_the_scope_for_the_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A refresh in the middle of a sweep: the new prefetch is for one release, so the scope is
    read narrowly, but the rest of the earlier sweep is still running. Once their narrow reads
    ask as much as a quarter of the scope, it is loaded whole, once, for the rest of the pass."""
    kafka, releases, adapters, snap = _big_topics(monkeypatch, call=1)
    _pass(snap, adapters, releases[:10])  # the sweep's first ten releases, then a refresh
    snap.clear()
    snap.prefetch(["r0"])
    _drain(snap)
    assert kafka.stats.calls == {"observe_scope": 1}
    live = [snap.observe(adapters, releases[i], f"r{i}") for i in range(10, 40)]
    assert live == [StageOps.observe_adapters(adapters, releases[i]) for i in range(10, 40)]
    # 40 topics / 4 = 10 asked; each narrow read asks 1 name + 1 for its round trip: 4 narrow
    # reads (8 asked), then the fifth loads the scope, which the other 25 read
    assert kafka.stats.calls == {"observe_scope": 2, "observe": 4 + 30}
