"""``controller run --source kubernetes``: a list-then-watch cache of PipelineRelease objects, after
client-go's reflector and informer.

Per scope (all namespaces, or each ``--namespace``) a ``Reflector`` lists the objects once, then
watches from the list's resourceVersion with bookmarks, keeping ``ObjectCache`` current;
``KubeSource.load`` reads the cache instead of listing. A watch the server ends (after
``WATCH_SECONDS``, or earlier) is resumed from the last resourceVersion seen, so it costs no LIST.
The scope is listed again only when:

- the watch answers 410 Gone (``WatchExpired``: the version is older than the server keeps);
- the resync period has passed (``--resync``): a full re-list, unlike client-go's resync, which
  replays its cache; so an event the cache missed cannot stay missed longer than one period.

Other errors (connection refused, 5xx, a read timeout) are retried from the same resourceVersion
after a backoff (``BACKOFF_FIRST`` doubling to ``BACKOFF_MAX``, reset by a watch that delivered an
event or ended normally). Each reflector runs in its own daemon thread: the watch is I/O, not a
worker's wait.

An object added or deleted, or modified with a new ``metadata.generation`` (the spec changed; the
API server also bumps it when deletion starts) or another uid, calls ``on_change``, which
``controller/cli/run.py`` sets to ``Controller.trigger``: the path ``POST /hooks/git`` takes, so
the controller refreshes at once and queues the releases whose fingerprint changed. A status-only
update (the controller's own status writes, which leave the generation alone) refreshes the cache
and wakes nothing, so the controller's writes never wake it in a loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from controller.adapters.kube import WatchExpired
from controller.obs.logging import get_logger

__all__ = ["DEFAULT_RESYNC_SECONDS", "KubeWatch", "ObjectCache", "Reflector", "WatchApi"]

_log = get_logger(__name__)

DEFAULT_RESYNC_SECONDS = 600.0
WATCH_SECONDS = 300
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0

Key = tuple[str, str]


class WatchApi(Protocol):
    """What the watch needs of ``controller.adapters.kube.KubeApi``."""

    namespaces: tuple[str, ...]

    def list_scope(self, namespace: str | None) -> tuple[list[dict[str, Any]], str]: ...

    def watch_scope(self, namespace: str | None, resource_version: str,
                    timeout_seconds: int) -> Iterator[dict[str, Any]]: ...


def _key(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _spec_identity(obj: dict[str, Any] | None) -> tuple[Any, ...] | None:
    """What a change must touch to wake the controller: uid and generation (spec, deletion)."""
    if obj is None:
        return None
    meta = obj.get("metadata") or {}
    return meta.get("uid"), meta.get("generation"), meta.get("deletionTimestamp") is not None


class ObjectCache:
    """The objects the reflectors saw last, by (namespace, name). Thread-safe."""

    def __init__(self) -> None:
        self._objects: dict[Key, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def items(self) -> list[dict[str, Any]]:
        """The cached objects, ordered by namespace and name."""
        with self._lock:
            return [self._objects[k] for k in sorted(self._objects)]

    def replace(self, namespace: str | None, items: Iterable[dict[str, Any]]) -> list[Key]:
        """Make the scope (``namespace`` None: everything) hold exactly ``items``; the keys whose
        object appeared, disappeared or changed its spec identity."""
        fresh = {_key(o): o for o in items}
        with self._lock:
            old = {k: o for k, o in self._objects.items() if namespace is None or k[0] == namespace}
            for k in old:
                del self._objects[k]
            self._objects.update(fresh)
        return sorted(k for k in set(old) | set(fresh)
                      if _spec_identity(old.get(k)) != _spec_identity(fresh.get(k)))

    def apply(self, kind: str, obj: dict[str, Any]) -> bool:
        """Apply one watch event; True when it should wake the controller."""
        k = _key(obj)
        with self._lock:
            before = self._objects.get(k)
            if kind == "DELETED":
                self._objects.pop(k, None)
                return before is not None
            self._objects[k] = obj
        return _spec_identity(before) != _spec_identity(obj)


class Reflector:
    """List then watch one scope into the cache; ``step`` is one request (tests drive it)."""

    def __init__(self, api: WatchApi, namespace: str | None, cache: ObjectCache,
                 resync: float = DEFAULT_RESYNC_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.namespace = namespace
        self.cache = cache
        self.resync = resync
        self.clock = clock
        self.on_change: Callable[[], None] = lambda: None
        self.resource_version: str | None = None
        """Where the next watch starts (the last version the list or an event carried)."""
        self.pending: str | None = "start"
        """Why the next step lists (start, expired), None: it watches unless the resync is due."""
        self.relisted_at = 0.0
        self.backoff = 0.0
        """Seconds to wait before the next request; 0 after a success."""

    @property
    def scope(self) -> str:
        return self.namespace or "*"

    def relist(self, why: str) -> None:
        items, version = self.api.list_scope(self.namespace)
        changed = self.cache.replace(self.namespace, items)
        self.resource_version, self.relisted_at, self.pending = version, self.clock(), None
        _log.info("kube_listed", scope=self.scope, why=why, objects=len(items), changed=len(changed),
                  resource_version=version)
        if changed:
            self.on_change()

    def step(self, stop: threading.Event | None = None) -> None:
        """One LIST (first, after 410 Gone, or when the resync period is up) or one WATCH until
        the server ends it; an error leaves ``backoff`` set and the resourceVersion as it was."""
        try:
            left = self.resync - (self.clock() - self.relisted_at)
            if self.pending is not None or left <= 0 or self.resource_version is None:
                self.relist(self.pending or "resync")
            else:
                self._watch(int(min(WATCH_SECONDS, max(1.0, left))), stop)
            self.backoff = 0.0
        except WatchExpired as e:
            _log.info("kube_watch_expired", scope=self.scope, error=str(e))
            self.pending, self.backoff = "expired", 0.0
        except Exception as e:
            self.backoff = min(BACKOFF_MAX, max(BACKOFF_FIRST, self.backoff * 2))
            _log.warning("kube_watch_failed", scope=self.scope, error=f"{type(e).__name__}: {e}",
                         retry_in=self.backoff)

    def _watch(self, timeout: int, stop: threading.Event | None) -> None:
        for event in self.api.watch_scope(self.namespace, self.resource_version or "", timeout):
            kind, obj = str(event.get("type")), event.get("object") or {}
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if kind != "BOOKMARK" and self.cache.apply(kind, obj):
                _log.info("kube_object_changed", type=kind, object="/".join(_key(obj)),
                          generation=(obj.get("metadata") or {}).get("generation"))
                self.on_change()
            if version:
                self.resource_version = str(version)
            self.backoff = 0.0
            if stop is not None and stop.is_set():
                return

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step(stop)
            if self.backoff and stop.wait(self.backoff):
                return


class KubeWatch:
    """The cache and one reflector per scope; ``sync`` lists (at start, in the caller's thread, so
    a missing CRD, API or permission fails the start), ``start`` watches in daemon threads."""

    def __init__(self, api: WatchApi, resync: float = DEFAULT_RESYNC_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cache = ObjectCache()
        scopes: tuple[str | None, ...] = tuple(api.namespaces) or (None,)
        self.reflectors = [Reflector(api, ns, self.cache, resync, clock) for ns in scopes]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def sync(self) -> None:
        for r in self.reflectors:
            r.relist("start")

    def start(self, on_change: Callable[[], None]) -> None:
        for r in self.reflectors:
            r.on_change = on_change
            t = threading.Thread(target=r.run, args=(self._stop,), name=f"pipectl-watch-{r.scope}",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        """Ask the threads to end; one inside a watch ends at its next event or when the server
        ends the watch (they are daemon threads: the process does not wait for them)."""
        self._stop.set()
