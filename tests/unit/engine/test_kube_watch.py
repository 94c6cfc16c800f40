"""The PipelineRelease watch (``controller/engine/kube_watch.py``) against a fake of its own narrow
interface (``WatchApi``: one LIST, one WATCH): events in, the cache and wake-ups out, a re-list on
410 Gone and on resync, backoff on errors, and the controller woken through ``Controller.trigger``
and queueing only a release whose spec changed."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.adapters.kube import WatchExpired
from controller.engine.controller import Controller
from controller.engine.kube_source import KubeSource
from controller.engine.kube_watch import BACKOFF_FIRST, BACKOFF_MAX, WATCH_SECONDS, KubeWatch, Reflector
from controller.source.git import GitSource


def obj(name: str, ns: str = "team-a", generation: int = 1, version: str = "1", **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "uid": f"uid-{ns}-{name}", "generation": generation,
                         "resourceVersion": version}, "spec": {"version": "1.0.0"}, "status": status}


class FakeApi:
    """Lists return ``items`` at ``version``; each watch call plays the next script: events, then
    optionally raises."""

    def __init__(self, items: list[dict[str, Any]], namespaces: tuple[str, ...] = ()) -> None:
        self.namespaces = namespaces
        self.items, self.version = items, "10"
        self.lists: list[str | None] = []
        self.watches: list[tuple[str | None, str, int]] = []
        self.scripts: list[tuple[list[dict[str, Any]], Exception | None]] = []
        self.release = threading.Event()  # a watch with no script left blocks until this is set

    def list_scope(self, namespace: str | None) -> tuple[list[dict[str, Any]], str]:
        self.lists.append(namespace)
        return [o for o in self.items if namespace in (None, o["metadata"]["namespace"])], self.version

    def watch_scope(self, namespace: str | None, resource_version: str,
                    timeout_seconds: int) -> Iterator[dict[str, Any]]:
        self.watches.append((namespace, resource_version, timeout_seconds))
        if not self.scripts:
            self.release.wait(5)
            return
        events, error = self.scripts.pop(0)
        yield from events
        if error is not None:
            raise error


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reflector(api: FakeApi, resync: float = 600.0) -> tuple[Reflector, list[int], Clock]:
    clock = Clock()
    r = Reflector(api, None, KubeWatch(api).cache, resync, clock)
    wakes: list[int] = []
    r.on_change = lambda: wakes.append(1)
    return r, wakes, clock


def names(r: Reflector) -> list[str]:
    return [o["metadata"]["name"] for o in r.cache.items()]


def test_one_list_then_events_keep_the_cache_and_wake_only_on_spec_changes() -> None:
    api = FakeApi([obj("a"), obj("b")])
    r, wakes, _ = reflector(api)
    r.step()
    assert api.lists == [None] and names(r) == ["a", "b"] and r.resource_version == "10"
    wakes.clear()  # the first list filled an empty cache
    api.scripts.append(([
        {"type": "MODIFIED", "object": obj("a", version="11", phase="Progressing")},  # our status write
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
    ], None))
    r.step()
    assert wakes == [] and r.cache.items()[0]["status"] == {"phase": "Progressing"}
    assert r.resource_version == "12"
    api.scripts.append(([
        {"type": "MODIFIED", "object": obj("a", generation=2, version="13")},
        {"type": "ADDED", "object": obj("c", version="14")},
        {"type": "DELETED", "object": obj("b", version="15")},
    ], None))
    r.step()
    assert len(wakes) == 3 and names(r) == ["a", "c"] and r.cache.items()[0]["metadata"]["generation"] == 2
    assert [w[1] for w in api.watches] == ["10", "12"], "each watch resumes from the last version seen"
    assert api.lists == [None], "a watch the server ended is resumed, not re-listed"


def test_deletion_starting_wakes_even_without_a_generation_bump() -> None:
    api = FakeApi([obj("a")])
    r, wakes, _ = reflector(api)
    r.step()
    wakes.clear()
    deleting = obj("a", version="11")
    deleting["metadata"]["deletionTimestamp"] = "2026-12-05T11:00:00Z"
    api.scripts.append(([{"type": "MODIFIED", "object": deleting}], None))
    r.step()
    assert wakes == [1]


def test_410_gone_lists_again_and_the_new_list_replaces_the_cache() -> None:
    api = FakeApi([obj("a"), obj("b")])
    r, wakes, _ = reflector(api)
    r.step()
    wakes.clear()
    api.scripts.append(([], WatchExpired("resourceVersion 10: Expired")))
    r.step()
    assert r.pending == "expired" and r.backoff == 0.0 and api.lists == [None]
    api.items, api.version = [obj("a"), obj("c")], "40"  # b went and c came while we were not watching
    r.step()
    assert api.lists == [None, None] and names(r) == ["a", "c"] and r.resource_version == "40"
    assert wakes == [1], "one wake for the re-list that changed something"
    api.scripts.append(([], None))
    r.step()
    assert api.watches[-1][1] == "40"


def test_errors_back_off_and_retry_from_the_same_version() -> None:
    api = FakeApi([obj("a")])
    r, _, _ = reflector(api)
    r.step()
    api.scripts += [([], ConnectionError("refused"))] * 2
    r.step()
    assert r.backoff == BACKOFF_FIRST
    r.step()
    assert r.backoff == 2 * BACKOFF_FIRST
    for _ in range(10):
        api.scripts.append(([], ConnectionError("refused")))
        r.step()
    assert r.backoff == BACKOFF_MAX
    api.scripts.append(([{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "11"}}}], None))
    r.step()
    assert r.backoff == 0.0 and {w[1] for w in api.watches[:-1]} == {"10"} and api.lists == [None]


def test_a_failed_list_is_retried_with_backoff() -> None:
    api = FakeApi([obj("a")])
    r, _, _ = reflector(api)

    def refused(namespace: str | None) -> tuple[list[dict[str, Any]], str]:
        raise ConnectionError("refused")

    api.list_scope = refused  # type: ignore[method-assign]
    r.step()
    assert r.backoff == BACKOFF_FIRST and r.pending == "start" and r.cache.items() == []


def test_the_resync_period_lists_again_and_bounds_the_watch() -> None:
    api = FakeApi([obj("a")])
    r, wakes, clock = reflector(api, resync=900.0)
    r.step()
    wakes.clear()
    api.scripts.append(([], None))
    r.step()
    assert api.watches[-1][2] == WATCH_SECONDS
    clock.now += 850
    api.scripts.append(([], None))
    r.step()
    assert api.watches[-1][2] == 50, "a watch ends by the time the resync is due"
    clock.now += 50
    r.step()
    assert api.lists == [None, None] and wakes == [], "an unchanged re-list wakes nothing"


def test_each_namespace_has_its_own_list_and_watch_into_one_cache() -> None:
    api = FakeApi([obj("a", ns="one"), obj("b", ns="two"), obj("c", ns="three")], namespaces=("one", "two"))
    watch = KubeWatch(api)
    watch.sync()
    assert api.lists == ["one", "two"] and [o["metadata"]["name"] for o in watch.cache.items()] == ["a", "b"]
    api.items = [obj("b2", ns="two")]
    watch.reflectors[1].relist("expired")
    assert [o["metadata"]["name"] for o in watch.cache.items()] == ["a", "b2"], "only its own namespace replaced"


def source(repo: Path, watch: KubeWatch) -> KubeSource:
    class NoList:
        def list_releases(self) -> list[dict[str, Any]]:
            raise AssertionError("a source with a cache must not list")

    return KubeSource(GitSource(str(repo), worktree=True), NoList(), watch.cache)  # type: ignore[arg-type]


class NoReconcile:
    stop = None


def release(repo: Path, generation: int = 1, version: str = "1") -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((repo / "releases" / "host-metrics.yaml").read_text())
    doc["metadata"].update({"namespace": "team-a", "uid": "uid-1", "generation": generation,
                            "resourceVersion": version})
    return doc


def test_an_event_wakes_the_controller_which_queues_only_a_changed_spec(repo: Path) -> None:
    api = FakeApi([release(repo)])
    watch = KubeWatch(api)
    watch.sync()
    ctl = Controller(source(repo, watch), NoReconcile())  # type: ignore[arg-type]
    assert ctl.refresh() is not None and ctl.queue.take("host-metrics")
    ctl.queue.done("host-metrics")
    ctl.queue.add("host-metrics", 30.0)  # as a pass does: due again after the interval
    written = release(repo, version="11")
    written["status"] = {"phase": "Succeeded", "observedGeneration": 1}
    changed = release(repo, generation=2, version="12")
    changed["spec"]["version"] = "9.9.9"
    api.scripts.append(([{"type": "MODIFIED", "object": written}], None))
    r = watch.reflectors[0]
    r.on_change = ctl.trigger
    r.step()
    assert not ctl.wake.is_set(), "the controller's own status write does not wake it"
    api.scripts.append(([{"type": "MODIFIED", "object": changed}], None))
    r.step()
    assert ctl.wake.is_set()
    ctl.refresh()
    assert ctl.queue.take("host-metrics") is True
    assert ctl.source.ref("host-metrics").generation == 2  # type: ignore[union-attr]
    assert api.lists == [None]


def test_start_watches_in_a_thread_and_calls_on_change(repo: Path) -> None:
    api = FakeApi([obj("a")])
    watch = KubeWatch(api)
    watch.sync()
    woke = threading.Event()
    api.scripts.append(([{"type": "ADDED", "object": obj("b", version="11")}], None))
    watch.start(woke.set)
    try:
        assert woke.wait(5)
        assert [o["metadata"]["name"] for o in watch.cache.items()] == ["a", "b"]
    finally:
        watch.stop()
        api.release.set()
    for t in watch._threads:
        t.join(5)
        assert not t.is_alive()


@pytest.mark.parametrize("kind", ["ADDED", "MODIFIED"])
def test_an_event_for_an_object_unknown_to_the_cache_wakes(kind: str) -> None:
    api = FakeApi([])
    r, wakes, _ = reflector(api)
    r.step()
    api.scripts.append(([{"type": kind, "object": copy.deepcopy(obj("x", version="11"))}], None))
    r.step()
    assert wakes == [1] and names(r) == ["x"]
