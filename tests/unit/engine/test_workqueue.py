"""The work queue and the controller's workers (controller-runtime semantics), without backends.

- ``WorkQueue``: one entry per item due at the earliest time asked; at most one holder per item (an
  item added while held is due again only once it is done); exponential backoff per failure, reset by
  ``forget``.
- ``Controller`` with N workers over a stub reconciler: a release whose pass blocks does not delay
  another release's; never two passes of one release at once; failures back off exponentially;
  ``trigger()`` from another thread wakes a worker at once.

The queue tests run on a fake monotonic clock; the worker tests use real threads and only wait on
events (bounded), never on fixed sleeps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from controller.engine import controller as controller_module
from controller.engine.controller import SWEEP_GRACE, Controller
from controller.engine.passes import Result
from controller.engine.workqueue import WorkQueue
from controller.source.validate import RepoSnapshot
from tests.unit.engine.fakes import FakeSource, write_repo

WAIT = 5.0  # upper bound of every wait on another thread (never reached when the code is right)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


# --- WorkQueue ------------------------------------------------------------------------------------


def test_an_item_is_queued_once_due_at_the_earliest_time_asked() -> None:
    clock = FakeClock()
    q = WorkQueue(clock)
    q.add("a", 30)
    q.add("a", 10)
    q.add("a", 60)
    assert q.due_in("a") == 10
    assert q.get(timeout=0) is None
    clock.advance(10)
    assert q.get(timeout=0) == "a"
    assert q.get(timeout=0) is None  # one entry, handed out once


def test_the_earliest_due_item_comes_first() -> None:
    clock = FakeClock()
    q = WorkQueue(clock)
    q.add("late", 5)
    q.add("early", 1)
    clock.advance(6)
    assert [q.get(timeout=0), q.get(timeout=0)] == ["early", "late"]


def test_an_item_added_while_held_is_due_again_only_after_done() -> None:
    clock = FakeClock()
    q = WorkQueue(clock)
    q.add("a")
    assert q.get(timeout=0) == "a"
    q.add("a")  # e.g. a webhook while the pass runs
    assert q.get(timeout=0) is None, "a second worker must not get a release that is being reconciled"
    assert q.take("a") is False
    q.done("a")
    assert q.get(timeout=0) == "a"


@pytest.mark.parametrize(
    ("failures", "delays"),
    [
        (4, [5.0, 10.0, 20.0, 40.0]),
        (9, [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0, 300.0]),  # capped at max_delay
    ],
)
def test_backoff_doubles_per_failure_up_to_the_cap(failures: int, delays: list[float]) -> None:
    q = WorkQueue(FakeClock())
    assert [q.add_rate_limited("a") for _ in range(failures)] == delays
    assert q.failures("a") == failures


def test_forget_resets_the_backoff_and_at_least_is_honoured() -> None:
    q = WorkQueue(FakeClock())
    q.add_rate_limited("a")
    q.add_rate_limited("a")
    q.forget("a")
    assert q.add_rate_limited("a") == 5.0
    assert q.add_rate_limited("b", at_least=30.0) == 30.0  # the pass's own requeue_after wins


def test_idle_means_nothing_held_and_nothing_due_soon() -> None:
    clock = FakeClock()
    q = WorkQueue(clock=clock)
    assert q.idle(within=1.0)
    q.add("a", after=0.5)
    assert not q.idle(within=1.0) and q.idle(within=0.1)
    clock.advance(0.5)
    assert q.get(timeout=0) == "a"
    assert not q.idle(within=0.0)  # held by a worker
    q.add("a", after=30.0)  # asked again while held
    q.done("a")
    assert q.idle(within=1.0) and not q.idle(within=60.0)


def test_get_wakes_for_an_add_from_another_thread() -> None:
    q = WorkQueue()
    got: list[str | None] = []
    t = threading.Thread(target=lambda: got.append(q.get(timeout=WAIT)))
    t.start()
    q.add("a")
    t.join(WAIT)
    assert got == ["a"]


def test_shutdown_releases_waiting_workers() -> None:
    q = WorkQueue()
    got: list[str | None] = []
    t = threading.Thread(target=lambda: got.append(q.get()))
    t.start()
    q.shutdown()
    t.join(WAIT)
    assert not t.is_alive() and got == [None]


# --- Controller with workers --------------------------------------------------------------------


@dataclass
class StubReconciler:
    """Records passes; a release's pass may block on an event or fail, as a test scripts."""

    block: dict[str, threading.Event] = field(default_factory=dict)
    fail: set[str] = field(default_factory=set)
    requeue_after: float | None = None
    passes: list[str] = field(default_factory=list)
    active: dict[str, int] = field(default_factory=dict)
    max_active: dict[str, int] = field(default_factory=dict)
    entered: dict[str, threading.Event] = field(default_factory=dict)
    finished: dict[str, threading.Event] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def event(self, table: dict[str, threading.Event], name: str) -> threading.Event:
        with self.lock:
            return table.setdefault(name, threading.Event())

    def reconcile(self, snap: RepoSnapshot, name: str) -> Result:
        with self.lock:
            self.passes.append(name)
            self.active[name] = self.active.get(name, 0) + 1
            self.max_active[name] = max(self.max_active.get(name, 0), self.active[name])
        self.event(self.entered, name).set()
        try:
            gate = self.block.get(name)
            if gate is not None:
                assert gate.wait(WAIT), f"{name}'s pass was never released"
            if name in self.fail:
                return Result(errors=[f"{name} failed"], requeue_after=0.0)
            return Result(requeue_after=self.requeue_after)
        finally:
            with self.lock:
                self.active[name] -= 1
            self.event(self.finished, name).set()

    def count(self, name: str) -> int:
        with self.lock:
            return self.passes.count(name)


@contextmanager
def running(ctrl: Controller) -> Iterator[threading.Thread]:
    t = threading.Thread(target=ctrl.run, name="controller", daemon=True)
    t.start()
    try:
        yield t
    finally:
        ctrl.stop.set()
        ctrl.wake.set()
        for gate in getattr(ctrl.reconciler, "block", {}).values():
            gate.set()
        t.join(WAIT)
        assert not t.is_alive(), "the controller did not stop"


def controller(tmp_path: Path, names: list[str], rec: StubReconciler, workers: int = 2) -> Controller:
    source = FakeSource(write_repo(tmp_path / "repo", names))
    return Controller(source, rec, interval=3600.0, workers=workers)  # type: ignore[arg-type]


def wait_for(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_a_blocked_pass_does_not_delay_another_release(tmp_path: Path) -> None:
    rec = StubReconciler(block={"slow": threading.Event()})
    ctrl = controller(tmp_path, ["slow", "fast"], rec, workers=2)
    with running(ctrl):
        assert rec.event(rec.entered, "slow").wait(WAIT)
        assert rec.event(rec.finished, "fast").wait(WAIT), "fast waited for slow's pass"
        assert not rec.event(rec.finished, "slow").is_set()
        ctrl.trigger("fast")  # and again, still while slow is blocked
        wait_for(lambda: rec.count("fast") == 2, "fast's second pass")
        assert not rec.event(rec.finished, "slow").is_set()
        rec.block["slow"].set()
        assert rec.event(rec.finished, "slow").wait(WAIT)


def test_never_two_passes_of_one_release_at_once(tmp_path: Path) -> None:
    rec = StubReconciler(block={"slow": threading.Event()})
    ctrl = controller(tmp_path, ["slow"], rec, workers=3)
    with running(ctrl):
        assert rec.event(rec.entered, "slow").wait(WAIT)
        for _ in range(5):  # webhooks and approvals while the pass runs, from other threads
            threading.Thread(target=ctrl.trigger, args=("slow",)).start()
        wait_for(lambda: ctrl.queue.due_in("slow") is not None, "the re-add")
        assert rec.count("slow") == 1
        rec.block.pop("slow").set()
        wait_for(lambda: rec.count("slow") == 2, "the pass asked for while the first ran")
        time.sleep(0.05)  # a hand-off: a third pass would start now if the adds were not merged
        assert rec.count("slow") == 2
    assert rec.max_active == {"slow": 1}


def test_trigger_from_another_thread_runs_a_pass_now(tmp_path: Path) -> None:
    rec = StubReconciler()
    ctrl = controller(tmp_path, ["a"], rec, workers=2)
    with running(ctrl):
        wait_for(lambda: rec.count("a") == 1, "the first pass")
        assert ctrl.queue.due_in("a") == pytest.approx(3600.0, abs=5.0)  # next: the interval
        t0 = time.monotonic()
        threading.Thread(target=ctrl.trigger, args=("a",)).start()
        wait_for(lambda: rec.count("a") == 2, "the triggered pass")
        assert time.monotonic() - t0 < 1.0, "the worker was not woken by the trigger"


def test_failed_passes_back_off_exponentially_and_success_resets(tmp_path: Path) -> None:
    clock = FakeClock()
    rec = StubReconciler(fail={"a"}, requeue_after=42.0)
    source = FakeSource(write_repo(tmp_path / "repo", ["a"]))
    ctrl = Controller(source, rec, interval=300.0, workers=1, clock=clock)  # type: ignore[arg-type]
    due = []
    for _ in range(4):
        ctrl.run_once()
        due.append(ctrl.queue.due_in("a"))
        clock.advance(due[-1] or 0)
    assert due == [5.0, 10.0, 20.0, 40.0]
    rec.fail.clear()
    ctrl.run_once()
    assert ctrl.queue.failures("a") == 0
    assert ctrl.queue.due_in("a") == 42.0  # the pass's requeue_after
    assert rec.count("a") == 5


def test_a_pass_that_raises_backs_off_too(tmp_path: Path) -> None:
    clock = FakeClock()

    class Raising:
        def reconcile(self, snap: RepoSnapshot, name: str) -> Result:
            raise RuntimeError("bug")

    source = FakeSource(write_repo(tmp_path / "repo", ["a"]))
    ctrl = Controller(source, Raising(), interval=300.0, clock=clock)  # type: ignore[arg-type]
    ctrl.run_once()
    assert ctrl.queue.due_in("a") == 30.0  # max(backoff 5 s, the 30 s retry of an error)
    assert ctrl.queue.failures("a") == 1


@dataclass
class RecordingLive:
    """The engine's ``LiveView`` as the controller drives it: a new pass, then a prefetch."""

    calls: list[tuple[str, list[str]]] = field(default_factory=list)

    def clear(self) -> None:
        self.calls.append(("clear", []))

    def prefetch(self, owners: Any) -> None:
        self.calls.append(("prefetch", sorted(owners)))


def test_each_refresh_prefetches_the_live_state_of_the_due_releases_only(tmp_path: Path) -> None:
    rec = StubReconciler()
    live = RecordingLive()
    rec.ops = type("Ops", (), {"live": live})()  # type: ignore[attr-defined]
    ctrl = controller(tmp_path, ["a", "b", "c"], rec)
    ctrl.run_once()  # first refresh: every release is new, so due
    assert live.calls == [("clear", []), ("prefetch", ["a", "b", "c"])]
    assert sorted(rec.passes) == ["a", "b", "c"]
    ctrl.trigger("b")  # an approval: only b is due now, the others in an hour
    ctrl.run_once()
    assert live.calls[2:] == [("clear", []), ("prefetch", ["b"])]
    assert rec.passes[3:] == ["b"]


def test_converged_releases_come_due_together_just_after_the_next_refresh_which_prefetches_them(
    tmp_path: Path,
) -> None:
    """A converged release (no requeue asked) is not requeued ``interval`` after its own pass but
    to the next periodic refresh, so a sweep's releases come due together and that refresh's
    prefetch covers them all, whenever each one's pass ran in the sweep before."""
    clock = FakeClock()
    rec = StubReconciler()
    live = RecordingLive()
    rec.ops = type("Ops", (), {"live": live})()  # type: ignore[attr-defined]
    source = FakeSource(write_repo(tmp_path / "repo", ["a", "b", "c"]))
    ctrl = Controller(source, rec, interval=300.0, workers=1, clock=clock)  # type: ignore[arg-type]
    ctrl.refresh()
    for name, took in (("a", 2.0), ("b", 40.0), ("c", 120.0)):  # passes spread over the sweep
        clock.advance(took)
        assert ctrl.queue.take(name)
        ctrl.process(name)
        ctrl.queue.done(name)
    dues = {n: ctrl.queue.due_in(n) for n in "abc"}
    assert dues["a"] == dues["b"] == dues["c"]
    assert dues["a"] == pytest.approx(300.0 - 162.0 + SWEEP_GRACE / 2)
    clock.advance(300.0 - 162.0)  # the next periodic refresh
    ctrl.refresh()
    assert live.calls[-1] == ("prefetch", ["a", "b", "c"])


def test_a_webhook_before_the_sweep_time_does_not_move_it(tmp_path: Path) -> None:
    """Webhooks every few seconds used to push the periodic refresh off for good: the converged
    releases still came due at the sweep time, with no refresh there to prefetch for them."""
    clock = FakeClock()
    rec = StubReconciler()
    live = RecordingLive()
    rec.ops = type("Ops", (), {"live": live})()  # type: ignore[attr-defined]
    source = FakeSource(write_repo(tmp_path / "repo", ["a", "b"]))
    ctrl = Controller(source, rec, interval=300.0, workers=1, clock=clock)  # type: ignore[arg-type]
    ctrl.run_once()
    assert ctrl._until_sweep() == pytest.approx(300.0)
    for _ in range(5):  # a webhook every 50 s, no new commit
        clock.advance(50.0)
        ctrl.refresh()
    assert ctrl._until_sweep() == pytest.approx(50.0)
    assert ctrl.queue.due_in("a") == pytest.approx(50.0 + SWEEP_GRACE / 2)
    clock.advance(50.0)  # the sweep time: the refresh the loop runs now prefetches both
    assert ctrl._until_sweep() == 0.0
    ctrl.refresh()
    assert live.calls[-1] == ("prefetch", ["a", "b"]) and ctrl._until_sweep() == pytest.approx(300.0)


def test_a_requeue_further_off_than_the_next_sweep_waits_only_for_the_sweep(tmp_path: Path) -> None:
    clock = FakeClock()
    rec = StubReconciler(requeue_after=13 * 3600.0)  # e.g. a table's next maintenance fire
    source = FakeSource(write_repo(tmp_path / "repo", ["a"]))
    ctrl = Controller(source, rec, interval=300.0, workers=1, clock=clock)  # type: ignore[arg-type]
    ctrl.run_once()
    assert ctrl.queue.due_in("a") == pytest.approx(300.0 + SWEEP_GRACE / 2)


def test_a_release_that_converges_after_a_late_refresh_was_due_waits_for_the_sweep_after(tmp_path: Path) -> None:
    """No pass loop while the periodic refresh is late: a release converging after the sweep time
    (but before that refresh ran) is requeued to the sweep after, not at once."""
    clock = FakeClock()
    rec = StubReconciler()
    source = FakeSource(write_repo(tmp_path / "repo", ["a"]))
    ctrl = Controller(source, rec, interval=300.0, workers=1, clock=clock)  # type: ignore[arg-type]
    ctrl.refresh()
    clock.advance(310.0)  # past the sweep; no refresh yet
    assert ctrl.queue.take("a")
    ctrl.process("a")
    ctrl.queue.done("a")
    assert ctrl.queue.due_in("a") == pytest.approx(600.0 - 310.0 + SWEEP_GRACE / 2)


def test_a_worker_trims_the_heap_once_the_sweep_is_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trims: list[set[str]] = []
    rec = StubReconciler()
    ctrl = controller(tmp_path, ["a", "b", "c"], rec, workers=2)

    def trim() -> bool:
        trims.append(ctrl.queue.names())
        return True

    monkeypatch.setattr(controller_module.memory, "trim", trim)
    with running(ctrl):
        wait_for(lambda: bool(trims), "a trim")
        assert all(rec.count(n) == 1 for n in ("a", "b", "c"))
    # Only once every pass of the sweep was done: all three waiting for the next sweep, none held.
    assert trims[0] == {"a", "b", "c"} and all(ctrl.queue.due_in(n) > 60 for n in trims[0])  # type: ignore[operator]


def test_the_end_of_a_sweep_drops_the_store_preloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ended: list[set[str]] = []
    rec = StubReconciler()
    ctrl = controller(tmp_path, ["a", "b"], rec, workers=1)
    monkeypatch.setattr(controller_module, "Store", object)  # the stub's store stands for a Store
    rec.store = SimpleNamespace(end_pass=lambda: ended.append(ctrl.queue.names()))  # type: ignore[attr-defined]
    with running(ctrl):
        wait_for(lambda: bool(ended), "the sweep's end")
        assert all(rec.count(n) == 1 for n in ("a", "b"))
    assert ended[0] == {"a", "b"}
