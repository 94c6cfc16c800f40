"""A watched adapter in the pass-wide snapshot (``engine.snapshot.ScopeWatcher``): its unchanged
scopes stay across passes, only what its watch names is read again, and a watch that cannot tell
or fails makes the pass read everything, as without a watch."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta

from controller.engine.snapshot import LiveSnapshot, ScopeWatcher
from controller.engine.stage_ops import StageOps
from controller.plan.resources import ResourceKind, TableResource
from tests.unit.engine.test_snapshot import ScopedBackend, _world
from tests.unit.engine.world import Clock, FakeBackend

K = ResourceKind


class WatchedBackend(ScopedBackend):
    """Hive-like scopes and a watch answering what the test queues (None: cannot tell)."""

    def __init__(self, *a: object, **kw: object) -> None:
        super().__init__(*a, **kw)  # type: ignore[arg-type]
        self.answers: list[set[str] | Exception | Callable[[], set[str] | None] | None] = []
        self.asked = 0

    def changed_scopes(self) -> set[str] | None:
        self.asked += 1
        answer = self.answers.pop(0) if self.answers else set()
        if isinstance(answer, Exception):
            raise answer
        return answer() if callable(answer) else answer


def _watched_world(clock: Clock) -> tuple[dict[ResourceKind, FakeBackend], list[list[object]], WatchedBackend]:
    adapters, releases = _world(6, clock)
    hive = WatchedBackend("hive", {K.DATABASE, K.TABLE}, clock)
    hive.live.update(adapters[K.TABLE].live)
    adapters[K.DATABASE] = adapters[K.TABLE] = hive
    return adapters, releases, hive  # type: ignore[return-value]


def _loads(hive: WatchedBackend) -> int:
    return hive.stats.calls["observe_scope"]


def _pass(snap: LiveSnapshot, adapters: Mapping[ResourceKind, FakeBackend], releases: list[list[object]]) -> None:
    for i, desired in enumerate(releases):
        assert snap.observe(adapters, desired, f"r{i}") == StageOps.observe_adapters(adapters, desired)  # type: ignore[arg-type]


def _next_pass(snap: LiveSnapshot, adapters: Mapping[ResourceKind, FakeBackend], releases: list[list[object]],
               hive: WatchedBackend) -> int:
    """A new pass (``clear``, then every release observes); the scope loads so far."""
    snap.clear()
    _pass(snap, adapters, releases)
    return _loads(hive)


def test_unchanged_scopes_stay_across_passes_and_a_named_one_is_read_again() -> None:
    clock = Clock()
    adapters, releases, hive = _watched_world(clock)
    assert isinstance(hive, ScopeWatcher)
    snap = LiveSnapshot(clock, StageOps.observe_adapters)
    _pass(snap, adapters, releases)  # the watch starts (first use, answering set()) before the first load
    assert hive.asked == 1
    first = _loads(hive)
    assert first == 4  # databases + db0, db1, db2

    hive.answers = [set()]
    clock.advance(30)
    snap.clear()  # a new pass: the watch says nothing changed
    _pass(snap, adapters, releases)
    assert (hive.asked, _loads(hive)) == (2, first)

    hive.live[(K.TABLE, "db1.tab1")] = TableResource(name="db1.tab1", columns=[], properties={"x": "2"})
    hive.answers = [{"db:db1"}]
    clock.advance(30)
    snap.clear()
    _pass(snap, adapters, releases)  # the pass sees the change (asserted against direct reads)
    assert _loads(hive) == first + 1


def test_a_watch_that_cannot_tell_or_fails_reads_every_scope_again() -> None:
    clock = Clock()
    adapters, releases, hive = _watched_world(clock)
    snap = LiveSnapshot(clock, StageOps.observe_adapters)
    _pass(snap, adapters, releases)
    first = _loads(hive)
    for answer in (None, OSError("metastore down")):
        hive.answers = [answer]
        before = _loads(hive)
        snap.clear()
        _pass(snap, adapters, releases)
        assert _loads(hive) == before + first


def test_entries_of_a_watched_adapter_are_read_again_after_watch_ttl() -> None:
    clock = Clock()
    adapters, releases, hive = _watched_world(clock)
    snap = LiveSnapshot(
        clock, StageOps.observe_adapters, ttl=timedelta(seconds=5), pass_ttl=timedelta(seconds=60),
        watch_ttl=timedelta(seconds=300),
    )
    _pass(snap, adapters, releases)  # watched from the first use: entries live watch_ttl
    first = _loads(hive)
    clock.advance(299)
    assert _next_pass(snap, adapters, releases, hive) == first
    clock.advance(2)  # a resync, whatever the watch says
    assert _next_pass(snap, adapters, releases, hive) == 2 * first


def test_a_watch_that_failed_once_keeps_nothing_until_it_has_covered_a_whole_pass() -> None:
    clock = Clock()
    adapters, releases, hive = _watched_world(clock)
    snap = LiveSnapshot(clock, StageOps.observe_adapters)
    hive.answers = [OSError("metastore down")]  # at the first use: not watched
    _pass(snap, adapters, releases)
    first = _loads(hive)
    # the watch answers set() now, but it did not cover the entries loaded before
    assert _next_pass(snap, adapters, releases, hive) == 2 * first
    assert _next_pass(snap, adapters, releases, hive) == 2 * first  # now it did


def test_a_load_in_flight_when_the_watch_names_its_scope_is_not_kept() -> None:
    clock = Clock()
    adapters, releases, hive = _watched_world(clock)
    snap = LiveSnapshot(clock, StageOps.observe_adapters)
    _pass(snap, adapters, releases)
    snap.clear()
    _pass(snap, adapters, releases)
    hive.answers = [{"db:db0"}]
    hive.load_hook = lambda: (setattr(hive, "load_hook", None), snap.clear())  # a pass starts mid-load
    snap.invalidate(hive)  # drop everything so the next observe loads (and races the clear)
    snap.observe(adapters, releases[0], "r0")
    loads = _loads(hive)
    snap.observe(adapters, releases[0], "r0")  # db0's racing load was not stored: read again
    assert _loads(hive) > loads


def test_a_scope_loaded_by_a_concurrent_first_reader_before_the_watch_started_is_not_kept() -> None:
    clock = Clock()
    adapters, releases, hive = _watched_world(clock)
    snap = LiveSnapshot(clock, StageOps.observe_adapters)
    racing = releases[1]  # its table is db1.tab1

    def first_ask() -> set[str] | None:
        # While the first reader waits for the watch to start, another release reads db1 ...
        snap.observe(adapters, racing, "r1")
        # ... and db1 changes before the watch starts: the watch will never report it.
        hive.live[(K.TABLE, "db1.tab1")] = TableResource(name="db1.tab1", columns=[], properties={"x": "2"})
        return set()

    hive.answers = [first_ask]
    _pass(snap, adapters, releases)  # every release's view equals a direct read
    hive.answers = [set()]
    snap.clear()
    _pass(snap, adapters, releases)  # and the entry read before the watch started was not kept
