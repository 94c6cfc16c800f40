"""A short-lived live-state snapshot shared by every release the controller reconciles (issue #17).

Without it each release-stage observes its own resources, so a no-op pass costs a few backend
calls per release. With it an adapter that can read a whole *scope* at once (``ScopedObserver``:
Kafka every topic, Hive the database list or one database's tables and views, Airflow every DAG,
Spark the runner's registry) is read once per scope, and every release's ``observe`` is answered
from that read: calls per pass no longer grow with the number of releases.

Rules that keep it honest:

- an entry read on demand lives at most ``ttl`` on the injected clock; one loaded by the pass's
  ``prefetch``, or on demand by a release that pass was started for, lives until the next ``clear``
  (the next pass), at most ``pass_ttl``: a pass over 1,000 releases lasts longer than ``ttl``, and
  its last releases must not read again what was loaded for them (a no-op pass is one read per
  scope, not one per scope per ``ttl``; the controller's first pass, with nothing to prefetch yet,
  read 5,001 topics every ``ttl`` before this);
- a big scope is not read whole for a few of its names: when the last load of a scope held at
  least ``NARROW_MIN`` entries and more than ``NARROW_RATIO`` times what the releases due ask of
  it (their names, plus ``NARROW_CALL`` per release for the round trip), they read their own names
  through ``direct`` (not stored) instead. One release waiting on Airflow at 1,000 releases read
  all 5,001 topics at every requeue (~2 CPU-s) before this. What narrow reads ask in a pass adds
  up: once it would have paid for a whole read, the scope is loaded whole for the rest of the pass
  (a refresh in the middle of a sweep leaves its remaining releases outside the new prefetch; one
  narrow read each took a commit-to-visible at 1,000 releases from ~7 to 72 s). A scope fresh
  already, being loaded, or of a watched adapter is always read from the snapshot;
- a write through the executor (``InvalidatingAdapter``) drops the entry of the scope it writes
  (every entry of the adapter for a database, or when the adapter cannot name the scope), both
  before and after the change; a read of that scope that was in flight while a write started or
  ended is returned to its caller but never stored, so no later reader sees a state older than
  the write. At 1,000 releases a table property change of one release dropped all 1,000 Hive
  databases, and the next sweep read each of them again (a commit-to-visible of 25-80 s);
- concurrent misses of one scope wait for one load instead of each reading the backend;
- kinds whose adapter is not a ``ScopedObserver`` (transforms) are observed as before;
- ``prefetch(releases)``, called by the controller when a pass starts with those releases due,
  loads every scope those releases read in their last pass on a small pool: a pass over 100
  releases then waits for 100 Hive databases, the topics and the DAGs read side by side instead of
  one after another, and a pass over one release reads only that release's scopes. A prefetched
  scope is stored by the same rules (generation, ttl); one that fails is not stored, and its
  error is given for ``ttl`` to every reader of the scope (those that waited on that load
  included) unless a write came since: a backend that is down costs one failing read (retries
  included) per scope and ``ttl``, not one per release and stage; after that it is read again;
- an adapter that can also list what several of its scopes hold in one call (``ScopeLister``: Hive
  on the metastore path, one ``get_table_meta`` for up to 200 databases) is listed once by the
  prefetch, and each scope is then loaded with its part of the listing (one call per database
  instead of two). A write that lands after the listing started keeps those loads out of the
  snapshot, as for any load;
- an adapter that can tell which of its scopes changed since it was last asked (``ScopeWatcher``:
  Hive on the metastore path, from the metastore's notification log) keeps its other scopes
  across passes: ``clear`` asks it (one call) and forgets only what it names, so a no-op pass
  reads no database at all. Its watch starts before its first load, so every entry is covered;
  its entries still live at most ``watch_ttl`` (a resync); a watch that cannot tell, or fails,
  forgets all of the adapter's entries, as for any other adapter.

The executor's re-observe right before an apply (the journal's crash check) goes to the adapter
itself, never to the snapshot.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Protocol, cast, runtime_checkable

from controller.adapters.base import Adapter, ApplyResult, CallStats
from controller.plan.actions import Action
from controller.plan.resources import Resource, ResourceKind

DEFAULT_TTL = timedelta(seconds=10)
DEFAULT_WATCH_TTL = timedelta(seconds=600)
"""Longest life of an entry of a watched adapter (``ScopeWatcher``): every scope is read again at
least this often, whatever the watch says (as an informer's resync)."""
DEFAULT_PASS_TTL = timedelta(seconds=120)
"""Longest life of a prefetched entry when no new pass clears it (the controller refreshes every
``interval``, 30 s by default, and at each webhook)."""
NARROW_MIN = 1000
"""Entries from which a scope may be read narrowly: a smaller one costs one cheap read whole."""
NARROW_RATIO = 4
"""A scope is read narrowly when it held more than this many times what is asked of it."""
NARROW_CALL = 20
"""A narrow read's round trip, counted as this many names (~10-20 ms against ~2 s for 5,000 topics)."""
_NARROW = timedelta(-1)
"""``_read_plan``'s answer for a read through ``direct``."""
PREFETCH_WORKERS = 4
"""Scopes loaded at once by ``prefetch`` (the metastore client opens as many connections)."""


@runtime_checkable
class ScopedObserver(Protocol):
    """An adapter that reads every resource of a scope (all topics, one Hive database…) at once."""

    def snapshot_scope(self, kind: ResourceKind, name: str) -> str | None:
        """The scope holding ``kind``/``name``; None when that kind is not read by scope."""
        ...

    def observe_scope(self, scope: str) -> Mapping[tuple[ResourceKind, str], Resource]:
        """Every live resource of ``scope``, keyed by (kind, name)."""
        ...


@runtime_checkable
class ScopeLister(ScopedObserver, Protocol):
    """A ``ScopedObserver`` that lists several scopes at once, then loads each with its hint."""

    def list_scopes(self, scopes: Sequence[str]) -> Mapping[str, Any] | None:
        """scope → a hint for ``observe_scope_with``, for the scopes it can list (others absent);
        None when this adapter has no cheaper way than loading each scope."""
        ...

    def observe_scope_with(self, scope: str, hint: Any) -> Mapping[tuple[ResourceKind, str], Resource]:
        """``observe_scope(scope)`` given its part of a ``list_scopes`` answer."""
        ...


@runtime_checkable
class ScopeWatcher(ScopedObserver, Protocol):
    """A ``ScopedObserver`` that can tell which of its scopes changed since it was last asked."""

    def changed_scopes(self) -> set[str] | None:
        """The scopes changed since the previous call (the first call starts the watch and answers
        the empty set); None: it cannot tell, read every scope again."""
        ...


@cache
def _scoped(cls: type) -> bool:
    """Whether instances of ``cls`` are ``ScopedObserver``s, once per class: a runtime protocol
    check walks the protocol's members (about 0.3 s per pass at 1,000 releases when done per
    resource)."""
    return issubclass(cls, ScopedObserver)


class LiveView(Protocol):
    """How the engine reads live state: ``StageOps`` asks it instead of the adapters."""

    def observe(
        self, adapters: Mapping[ResourceKind, Adapter], desired: Sequence[Resource], owner: str | None = None
    ) -> dict[tuple[str, str], Any]: ...

    def prefetch(self, owners: Iterable[str]) -> None: ...

    def invalidate(self, adapter: object, scope: str | None = None) -> None: ...

    def clear(self) -> None: ...


@dataclass(frozen=True)
class _Entry:
    loaded_at: datetime
    data: Mapping[tuple[ResourceKind, str], Resource]
    lifetime: timedelta


Direct = Callable[[Mapping[ResourceKind, Adapter], Sequence[Resource]], dict[tuple[str, str], Any]]


class LiveSnapshot:
    """Thread-safe, per-adapter scope cache; ``direct`` observes what is not read by scope."""

    def __init__(
        self,
        clock: Callable[[], datetime],
        direct: Direct,
        ttl: timedelta = DEFAULT_TTL,
        prefetch: int = PREFETCH_WORKERS,
        pass_ttl: timedelta = DEFAULT_PASS_TTL,
        watch_ttl: timedelta = DEFAULT_WATCH_TTL,
    ):
        self.clock = clock
        self.direct = direct
        self.ttl = ttl
        self.pass_ttl = max(pass_ttl, ttl)
        self.watch_ttl = max(watch_ttl, self.pass_ttl)
        self.workers = prefetch
        """Threads of ``prefetch``; 0: no prefetch."""
        self._lock = threading.Lock()
        self._entries: dict[tuple[int, str], _Entry] = {}
        self._generation: dict[int, int] = {}
        self._loading: dict[tuple[int, str], threading.Lock] = {}
        self._keep: dict[int, ScopedObserver] = {}  # ids stay valid while their adapter is referenced here
        self._epoch = 0  # passes started (``clear``)
        self._scopes_of: dict[str, tuple[int, dict[tuple[int, str], int]]] = {}
        """owner (release) → (epoch, the scopes it read in its latest pass → names it asked)."""
        self._sizes: dict[tuple[int, str], int] = {}
        """scope key → entries in its latest load (for the narrow reads)."""
        self._sweep: set[str] = set()
        """The owners this pass's ``prefetch`` was started for."""
        self._narrow: set[tuple[int, str]] = set()
        """Scopes this pass reads narrowly (decided by ``prefetch``)."""
        self._demand: dict[tuple[int, str], int] = {}
        """Scope → what this pass's narrow reads asked of it so far (names + ``NARROW_CALL`` each)."""
        self._pool: ThreadPoolExecutor | None = None
        self._hints: dict[tuple[int, str], tuple[tuple[int, int], datetime, Any]] = {}
        """scope key → (what ``_gen`` was and the clock at the listing, the hint)."""
        # (writes, when, error) of a scope's last load when it failed: given to its readers for ttl.
        # Counted against the adapter's writes, not its generation: a new pass (clear) bumps that
        # every refresh, and a backend that is down stays down across refreshes.
        self._failures: dict[tuple[int, str], tuple[int, datetime, Exception]] = {}
        self._writes: dict[int, int] = {}
        self._scope_gen: dict[tuple[int, str], int] = {}  # writes to one scope (``invalidate``)
        self._busy = 0  # prefetch tasks submitted and not finished
        self._idle = threading.Condition(self._lock)
        self._watched: set[int] = set()
        """Adapters whose watch has answered every time since it started (at their first use or a
        ``clear``): their entries live ``watch_ttl`` and stay across a ``clear`` unless named."""

    def observe(
        self, adapters: Mapping[ResourceKind, Adapter], desired: Sequence[Resource], owner: str | None = None
    ) -> dict[tuple[str, str], Any]:
        """Live state of ``desired``, as ``StageOps.observe`` would return it; the scopes read are
        remembered for ``owner`` (a release), for ``prefetch``."""
        live: dict[tuple[str, str], Any] = {}
        rest: list[Resource] = []
        by_scope: dict[tuple[int, str], tuple[ScopedObserver, list[Resource]]] = {}
        for d in desired:
            kind = ResourceKind(d.kind)
            adapter = adapters[kind]
            scoped = cast(ScopedObserver, adapter) if _scoped(type(adapter)) else None
            scope = scoped.snapshot_scope(kind, d.name) if scoped is not None else None
            if scoped is None or scope is None:
                rest.append(d)
            else:
                by_scope.setdefault((id(scoped), scope), (scoped, []))[1].append(d)
        for key, (scoped, ds) in by_scope.items():
            if owner is not None:
                self._note(owner, key, len(ds))
            lifetime = self._read_plan(key, owner, len(ds))
            if lifetime == _NARROW:
                rest.extend(ds)
                continue
            data = self._scope(scoped, key[1], lifetime)
            for d in ds:
                found = data.get((ResourceKind(d.kind), d.name))
                if found is not None:
                    live[(str(d.kind), d.name)] = found
        if rest:
            live.update(self.direct(adapters, rest))
        return live

    def _read_plan(self, key: tuple[int, str], owner: str | None, asked: int) -> timedelta | None:
        """How ``owner`` reads its ``asked`` names of scope ``key``: ``_NARROW`` (through
        ``direct``), or from the snapshot, where an entry loaded now lives that long (None:
        ``ttl``; the pass, for a release the pass was started for)."""
        with self._lock:
            in_sweep = owner is not None and owner in self._sweep
            lifetime = self.pass_ttl if in_sweep else None
            loading = self._loading.get(key)
            if self._fresh(key) is not None or key[0] in self._watched or (loading and loading.locked()):
                return lifetime
            if key not in self._narrow and (in_sweep or not self._too_big(key, asked + NARROW_CALL)):
                return lifetime
            demand = self._demand.get(key, 0) + asked + NARROW_CALL
            if demand * NARROW_RATIO >= self._sizes.get(key, 0):
                return self.pass_ttl  # narrow reads would add up to more than one whole read
            self._demand[key] = demand
            return _NARROW

    def _too_big(self, key: tuple[int, str], asked: int) -> bool:
        size = self._sizes.get(key)
        return size is not None and size >= NARROW_MIN and size > NARROW_RATIO * asked

    def invalidate(self, adapter: object, scope: str | None = None) -> None:
        """Forget ``scope`` (None: everything) read through ``adapter``; loads of it in flight
        are not stored."""
        with self._lock:
            self._writes[id(adapter)] = self._writes.get(id(adapter), 0) + 1
            if scope is None:
                self._drop_all(id(adapter))
                return
            key = (id(adapter), scope)
            self._scope_gen[key] = self._scope_gen.get(key, 0) + 1
            self._entries.pop(key, None)
            self._hints.pop(key, None)

    def _gen(self, key: tuple[int, str]) -> tuple[int, int]:
        """What a load of ``key`` must still see when it ends to be stored (lock held)."""
        return self._generation.get(key[0], 0), self._scope_gen.get(key, 0)

    def clear(self) -> None:
        """A new pass: forget every entry (loads in flight are not stored), except those of a
        watched adapter (``ScopeWatcher``) whose scopes its watch says did not change: asked here,
        one call per adapter. A watch that cannot tell, or fails, forgets all of its adapter's."""
        with self._lock:
            watchers = {k: a for k, a in self._keep.items() if isinstance(a, ScopeWatcher)}
        answers = {k: self._ask(a) for k, a in watchers.items()}
        with self._lock:
            for key in list(self._keep):
                changed = answers.get(key)
                if key not in self._watched:
                    changed = None  # the watch did not cover every entry: forget them all
                if changed is not None and not changed:
                    continue  # nothing changed: entries, hints and loads in flight stay good
                if answers.get(key) is not None:
                    self._watched.add(key)
                else:
                    self._watched.discard(key)
                self._generation[key] = self._generation.get(key, 0) + 1
                for k in [k for k in self._entries if k[0] == key and (changed is None or k[1] in changed)]:
                    del self._entries[k]
                for k in [k for k in self._hints if k[0] == key]:
                    del self._hints[k]
            self._epoch += 1
            self._sweep, self._narrow, self._demand = set(), set(), {}

    @staticmethod
    def _ask(adapter: ScopeWatcher) -> set[str] | None:
        try:
            return adapter.changed_scopes()
        except Exception:  # the watch failed: read every scope of the adapter again
            return None

    def prefetch(self, owners: Iterable[str]) -> None:
        """Start loading, on the pool, the scopes ``owners`` read in their latest pass (those not
        fresh already); returns at once. Readers of a scope being loaded wait for that load."""
        with self._lock:
            due = set(owners)
            self._sweep |= due
            asked: dict[tuple[int, str], int] = {}
            for o in due:
                for k, n in self._scopes_of.get(o, (0, {}))[1].items():
                    asked[k] = asked.get(k, 0) + n + NARROW_CALL
            by_adapter: dict[int, list[str]] = {}
            for key in sorted(asked):
                if key[0] not in self._keep or self._fresh(key) is not None:
                    continue
                if key[0] not in self._watched and self._too_big(key, asked[key]):
                    self._narrow.add(key)  # a few releases of many: each reads its own names
                else:
                    by_adapter.setdefault(key[0], []).append(key[1])
            # round-robin over adapters: the topics and the DAGs do not wait behind 100 databases
            todo = [
                (self._keep[k], scopes[i])
                for i in range(max(map(len, by_adapter.values()), default=0))
                for k, scopes in by_adapter.items()
                if i < len(scopes)
            ]
            if not todo or not self.workers:
                return
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="pipectl-prefetch")
            pool = self._pool
        listers = {id(a): a for a, _ in todo if isinstance(a, ScopeLister)}
        for ident, lister in listers.items():
            self._submit(pool, self._prefetch_listed, lister, by_adapter[ident])
        for adapter, scope in todo:
            if id(adapter) not in listers:
                self._submit(pool, self._prefetch_one, adapter, scope)

    def _submit(self, pool: ThreadPoolExecutor, fn: Callable[..., None], *args: Any) -> None:
        with self._lock:
            self._busy += 1
        pool.submit(self._run, fn, *args)

    def _run(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        finally:
            with self._lock:
                self._busy -= 1
                if not self._busy:
                    self._idle.notify_all()

    def wait_prefetched(self, timeout: float = 60.0) -> bool:
        """Wait until every prefetch load (and the loads a listing queued) is done; False on
        timeout. For tests and benchmarks: a pass never waits for the prefetch as a whole."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._busy, timeout)

    def _note(self, owner: str, key: tuple[int, str], names: int) -> None:
        with self._lock:
            epoch, scopes = self._scopes_of.get(owner, (-1, {}))
            if epoch != self._epoch:  # the owner's first read of this pass: forget its older scopes
                scopes = {}
                self._scopes_of[owner] = (self._epoch, scopes)
            scopes[key] = scopes.get(key, 0) + names

    def _prefetch_one(self, adapter: ScopedObserver, scope: str) -> None:
        try:
            self._load(adapter, scope, self.pass_ttl)
        except Exception:  # noqa: S110 - not stored; the release that asks reads it and sees the error
            pass

    def _prefetch_listed(self, adapter: ScopeLister, scopes: list[str]) -> None:
        """List ``scopes`` in one go, then load each on the pool with its hint. The scopes' load
        locks are held while listing, so a release asking for one meanwhile waits and then loads it
        with its hint too; a scope the listing does not cover, or every scope when it fails, loads
        as usual."""
        keys = sorted((id(adapter), s) for s in scopes)
        with self._lock:
            locks = [self._loading.setdefault(k, threading.Lock()) for k in keys]
            pool = self._pool
        for lock in locks:  # sorted: two listings never wait for each other in a cycle
            lock.acquire()
        try:
            with self._lock:
                gens, listed_at = {k[1]: self._gen(k) for k in keys}, self.clock()
            try:
                hints: Mapping[str, Any] = adapter.list_scopes(scopes) or {}
            except Exception:  # each scope loads as usual and reports its own error to its reader
                hints = {}
            with self._lock:
                for scope, hint in hints.items():
                    if scope in gens:
                        self._hints[(id(adapter), scope)] = (gens[scope], listed_at, hint)
        finally:
            for lock in locks:
                lock.release()
        for scope in scopes:
            if pool is not None:
                self._submit(pool, self._prefetch_one, adapter, scope)

    def _fresh(self, key: tuple[int, str]) -> _Entry | None:
        e = self._entries.get(key)
        if e is None:
            return None
        age = self.clock() - e.loaded_at
        return e if timedelta(0) <= age < e.lifetime else None

    def _scope(
        self, adapter: ScopedObserver, scope: str, lifetime: timedelta | None = None
    ) -> Mapping[tuple[ResourceKind, str], Resource]:
        with self._lock:
            first = id(adapter) not in self._keep
            self._keep[id(adapter)] = adapter
        if first and isinstance(adapter, ScopeWatcher) and self._ask(adapter) is not None:
            with self._lock:
                # A concurrent first reader may have loaded (or be loading) a scope before the
                # watch started: forget it, so every entry kept is covered by the watch.
                self._drop_all(id(adapter))
                self._watched.add(id(adapter))
        return self._load(adapter, scope, lifetime)

    def _raise_recent_failure(self, key: tuple[int, str]) -> None:
        """Re-raise the scope's last load error if it is younger than ``ttl`` and no write came
        since, new passes (``clear``) notwithstanding (lock held): a backend that is down costs
        one failing read (with its retries) per scope and ``ttl``, not one per release and stage
        waiting behind it."""
        failed = self._failures.get(key)
        if failed is None:
            return
        writes, at, exc = failed
        if writes == self._writes.get(key[0], 0) and timedelta(0) <= self.clock() - at < self.ttl:
            raise exc
        del self._failures[key]

    def _drop_all(self, key: int) -> None:
        """Forget the adapter's entries and hints; loads in flight are not stored (lock held)."""
        self._generation[key] = self._generation.get(key, 0) + 1
        for k in [k for k in self._entries if k[0] == key]:
            del self._entries[k]
        for k in [k for k in self._hints if k[0] == key]:
            del self._hints[k]

    def _load(
        self, adapter: ScopedObserver, scope: str, lifetime: timedelta | None = None
    ) -> Mapping[tuple[ResourceKind, str], Resource]:
        """The scope's entry, loaded when not fresh. A hint of ``_prefetch_listed`` is used once,
        and only when no write came since its listing and it is younger than ``ttl``; the entry
        is then as old as the listing."""
        key = (id(adapter), scope)
        with self._lock:
            e = self._fresh(key)
            if e is not None:
                return e.data
            self._raise_recent_failure(key)
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # one load per scope; the others wait for it and then read the entry (or its error)
            with self._lock:
                e = self._fresh(key)
                if e is not None:
                    return e.data
                self._raise_recent_failure(key)
                generation, started = self._gen(key), self.clock()
                writes = self._writes.get(key[0], 0)
                listed = self._hints.pop(key, None)
                if listed is not None and (
                    listed[0] != generation or not timedelta(0) <= started - listed[1] < self.ttl
                ):
                    listed = None  # written since the listing, or too old to trust
            try:
                if listed is not None and isinstance(adapter, ScopeLister):
                    started = listed[1]
                    data = dict(adapter.observe_scope_with(scope, listed[2]))
                else:
                    data = dict(adapter.observe_scope(scope))
            except Exception as exc:
                with self._lock:
                    if self._writes.get(key[0], 0) == writes:
                        self._failures[key] = (writes, self.clock(), exc)
                raise
            with self._lock:
                self._failures.pop(key, None)
                self._sizes[key] = len(data)
                if self._gen(key) == generation:
                    life = self.watch_ttl if key[0] in self._watched else lifetime or self.ttl
                    self._entries[key] = _Entry(started, data, life)
        return data


class InvalidatingAdapter:
    """An adapter whose ``apply`` drops the snapshot's entries of the adapter before and after
    the change (given to the executor); ``observe`` is the adapter's own, uncached."""

    def __init__(self, inner: Adapter, snapshot: LiveView):
        self.inner = inner
        self.snapshot = snapshot
        self.kinds = inner.kinds
        self.stats: CallStats = inner.stats

    def observe(self, kind: ResourceKind, names: Sequence[str]) -> dict[str, Resource]:
        return self.inner.observe(kind, names)

    def apply(self, action: Action) -> ApplyResult:
        scope = written_scope(self.inner, action)
        self.snapshot.invalidate(self.inner, scope)
        try:
            return self.inner.apply(action)
        finally:
            self.snapshot.invalidate(self.inner, scope)


def written_scope(adapter: Adapter, action: Action) -> str | None:
    """The one snapshot scope ``action`` changes through ``adapter``; None: any of them (an
    adapter that is not read by scope, or a database: it holds the scope of its tables too)."""
    if not _scoped(type(adapter)) or ResourceKind(action.kind) is ResourceKind.DATABASE:
        return None
    return cast(ScopedObserver, adapter).snapshot_scope(ResourceKind(action.kind), action.name)


def invalidating(adapters: Mapping[ResourceKind, Adapter], snapshot: LiveView) -> dict[ResourceKind, Adapter]:
    """``adapters`` with every apply reported to ``snapshot``."""
    return {k: InvalidatingAdapter(a, snapshot) for k, a in adapters.items()}
