"""The long-running controller: poll git (or wake on a webhook), pin one commit per snapshot, and
reconcile releases from a rate-limited work queue with N workers (default 4; ``--workers`` or
``PIPECTL_WORKERS``), controller-runtime style:

- a pass returns ``requeue_after``; a failed pass is retried with exponential backoff per release;
- at most one pass per release runs at a time, so one slow release never holds up another;
- a release whose pass changed something makes its ``dependsOn`` dependents due at once;
- a release the git source no longer declares is marked Ready=False NotInSource once per commit
  (``engine.orphans``), not left looking Ready;
- a manual rollback asked through the API (``requests.RollbackRequests``) is run by the release's
  worker at the start of its pass, so it never runs beside a pass of the same release.

SIGTERM sets the stop event: each worker finishes the action in flight and exits.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import structlog

from controller.engine import orphans
from controller.engine.kube_finalizer import Finalizer
from controller.engine.kube_source import KubeSource
from controller.engine.manual import rollback_stage
from controller.engine.passes import Result
from controller.engine.reconciler import Reconciler
from controller.engine.requests import RollbackRequest, RollbackRequests
from controller.engine.workqueue import WorkQueue
from controller.model.errors import PipectlError
from controller.obs import memory, metrics
from controller.obs.logging import redact
from controller.source.git import GitSource
from controller.source.validate import RepoSnapshot, load_repo
from controller.store.db import Store
from controller.store.destructive import Inventory
from controller.store.rollout import RolloutStore
from controller.store.suspend import PREFIX as SUSPEND_PREFIX

log = structlog.get_logger(__name__)

DEFAULT_WORKERS = 4
SWEEP_GRACE = 1.0
"""Converged releases come due this long after the periodic refresh (half of it, so the refresh's
prefetch, which covers releases due within it, sees them)."""


IDLE_TRIM_AFTER = 1.0
"""A worker that leaves the queue with nothing held and nothing due this soon trims the heap."""


def dependency_order(snap: RepoSnapshot) -> list[str]:
    """Releases sorted so that dependsOn come first (cycles were refused by validation)."""
    names = sorted(set(snap.releases) | set(snap.invalid_releases))
    seen: set[str] = set()
    out: list[str] = []

    def visit(n: str) -> None:
        if n in seen:
            return
        seen.add(n)
        if n in snap.releases:
            for d in snap.release(n).spec.depends_on:
                visit(d)
        out.append(n)

    for n in names:
        visit(n)
    return out


def fingerprints(snap: RepoSnapshot) -> dict[str, str]:
    """Per release: a digest of its manifest, the files it references and the environments, so a
    commit wakes only the releases it changed (the periodic pass still visits every release)."""
    envs = hashlib.sha256()
    for name in sorted(snap.environments):
        envs.update(snap.environment(name).model_dump_json().encode())
    out: dict[str, str] = {}
    for name in snap.invalid_releases:
        out[name] = "invalid:" + hashlib.sha256(repr(snap.invalid_releases[name]).encode()).hexdigest()
    for name in snap.releases:
        rel = snap.release(name)
        h = hashlib.sha256(envs.digest())
        h.update(rel.model_dump_json().encode())
        s = rel.spec
        paths = [x.path for x in s.schemas] + [j.entrypoint for j in s.streaming_jobs]
        paths += [d.path for d in s.dags] + [t.sql for t in s.transforms]
        for p in sorted(paths):
            try:
                h.update(p.encode() + b"\0" + snap.read_text(p).encode())
            except (OSError, UnicodeDecodeError):
                h.update(p.encode() + b"\0missing")
        out[name] = h.hexdigest()
    for name in snap.deleting & set(out):  # a deletion starting is a change: its finalizer acts at once
        out[name] = "deleting:" + out[name]
    return out


@dataclass
class Controller:
    """Git → work queue → N workers, each running one release's pass at a time."""

    PRELOAD_PREFIXES: ClassVar[tuple[str, ...]] = (
        RolloutStore.OWNED_PREFIXES + Inventory.OWNED_PREFIXES + (SUSPEND_PREFIX,)
    )
    """The kv rows every pass reads in one statement (``store.kvcache``)."""

    source: GitSource | KubeSource
    reconciler: Reconciler
    interval: float = 30.0
    workers: int = DEFAULT_WORKERS
    stop: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)
    clock: Callable[[], float] = time.monotonic
    on_pass: Callable[[RepoSnapshot, dict[str, float]], None] | None = None
    queue: WorkQueue = field(default_factory=WorkQueue)
    rollbacks: RollbackRequests = field(default_factory=RollbackRequests)
    finalizer: Finalizer | None = None
    """``--source kubernetes``: the objects' finalizer (``engine.kube_finalizer``), asked before
    each pass; made by ``__post_init__`` for a ``KubeSource``."""
    last_commit: str | None = None
    last_error: str | None = None
    _snap: RepoSnapshot | None = None
    _prints: dict[str, str] = field(default_factory=dict)
    _dependents: dict[str, list[str]] = field(default_factory=dict)
    _orphans_at: str | None = None
    """The commit whose undeclared releases were last marked (``_mark_orphans``)."""
    _next_sweep: float | None = None
    """When the next periodic refresh is due (``clock``): converged releases are requeued to it."""

    def __post_init__(self) -> None:
        self.queue = WorkQueue(self.clock)
        src, rec = self.source, self.reconciler
        if self.finalizer is None and isinstance(src, KubeSource) and isinstance(rec, Reconciler):
            self.finalizer = Finalizer(src, rec)

    def trigger(self, release: str | None = None) -> None:
        """Reconcile now: one release (approval), or look at git now (webhook) — a new commit
        then makes due exactly the releases it changed. Safe from any thread."""
        if release is not None:
            self.queue.add(release)
        self.wake.set()

    def snapshot(self) -> RepoSnapshot:
        commit = self.source.resolve()
        checkout = self.source.checkout(commit)  # cached per commit (and policy: source/policy.py)
        kube = self.source if isinstance(self.source, KubeSource) else None
        if self._snap is not None and commit is not None and self._snap.commit == commit and kube is None:
            if self._snap.root == checkout.root.resolve():
                return self._snap
        # objects change without a commit: a Kubernetes source is read (its watch's cache) on every refresh
        snap = kube.load(checkout.root) if kube is not None else load_repo(checkout.root)
        snap.commit = commit
        prints = fingerprints(snap)
        changed = sorted(n for n, fp in prints.items() if self._prints.get(n) != fp)
        if commit != self.last_commit:
            log.info("new commit", commit=commit, changed=changed)
        elif kube is not None and changed:
            log.info("objects changed", changed=changed)
        known = self.queue.names()
        for n in dependency_order(snap):
            if n in changed or n not in known:
                self.queue.add(n)
        for gone in known - set(prints):
            self.queue.remove(gone)
        self._dependents = _dependents(snap)
        self._snap, self.last_commit, self._prints = snap, commit, prints
        return snap

    @property
    def latest(self) -> RepoSnapshot | None:
        """The snapshot of the last refresh (None before the first)."""
        return self._snap

    def refresh(self) -> RepoSnapshot | None:
        """Read git (a new commit enqueues what it changed); None when the source failed. Starts a
        new pass-wide live-state snapshot (``engine.snapshot``): passes after it read afresh."""
        live = getattr(getattr(self.reconciler, "ops", None), "live", None)  # test doubles have none
        if live is not None:
            live.clear()
        self._preload_store()
        now = self.clock()
        if self._next_sweep is None or now >= self._next_sweep:
            # A webhook's refresh before the sweep time leaves it: the converged releases are due
            # just after it, and that refresh must prefetch for them (a webhook every 10 s used to
            # push it off for good, and every sweep of 1,000 releases ran with nothing prefetched).
            self._next_sweep = now + self.interval
        try:
            snap = self.snapshot()
        except Exception as e:
            self.last_error = f"git source: {e}"
            log.error("git source failed", error=str(e), error_type=type(e).__name__)
            return None
        self.last_error = None
        if self._orphans_at != snap.commit and not isinstance(self.source, KubeSource):
            self._mark_orphans(snap)
        if live is not None:  # the due releases' scopes load side by side while their passes run
            live.prefetch(
                [n for n in self._prints if (d := self.queue.due_in(n)) is not None and d <= SWEEP_GRACE]
            )
        return snap

    def _until_sweep(self) -> float:
        """Seconds until the periodic refresh is due (at most ``interval``)."""
        if self._next_sweep is None:
            return self.interval
        return min(self.interval, max(0.0, self._next_sweep - self.clock()))

    def _converged_after(self) -> float:
        """Seconds until a converged release's next pass: just after the next periodic refresh, so
        every converged release of a sweep comes due together, right after the refresh that
        prefetches their live state, instead of ``interval`` after each one's own pass (which kept
        the spread of the first pass and had each release read its own scopes)."""
        if self._next_sweep is None:
            return self.interval
        now, nxt = self.clock(), self._next_sweep
        if nxt <= now:  # the refresh is late (a long git read): this pass ran just now, so the one after
            nxt += self.interval * (1 + (now - nxt) // self.interval)
        return nxt - now + SWEEP_GRACE / 2

    def _preload_store(self) -> None:
        """Read the controller-owned state rows of every release in one statement for this pass
        (``store.kvcache``); on failure each pass reads its own rows."""
        store = self._state_store()
        if store is None:
            return
        try:
            store.preload_kv(self.PRELOAD_PREFIXES)
            store.preload_pass()
        except Exception as e:
            log.warning("state store preload failed; passes read their own rows", error=redact(str(e)))

    def _end_sweep(self) -> None:
        store = self._state_store()
        if store is not None:
            store.end_pass()

    def _state_store(self) -> Store | None:
        """The reconciler's state store (None for test doubles)."""
        store = getattr(self.reconciler, "store", None)
        return store if isinstance(store, Store) else None

    def _mark_orphans(self, snap: RepoSnapshot) -> None:
        """Once per commit: stored releases the source no longer declares say so in their status
        (``engine.orphans``); a failure is logged and tried again at the next refresh."""
        store, clock = getattr(self.reconciler, "store", None), getattr(self.reconciler, "clock", None)
        if store is None or clock is None:  # test doubles
            return
        try:
            written = orphans.mark(store, self._prints, snap.commit, clock)
        except Exception as e:
            log.warning("marking releases not in the source failed", error=redact(str(e)))
            return
        if written:
            log.info("releases not in the source", releases=written, commit=snap.commit)
        self._orphans_at = snap.commit

    def process(self, name: str) -> float:
        """One pass over ``name`` with its bookkeeping (requeue, backoff, dependents); seconds taken."""
        snap = self._snap
        req = self.rollbacks.take(name)
        if req is not None:
            self.rollback(snap, req)
        if snap is None or name not in self._prints:
            return 0.0
        t0 = time.monotonic()
        try:
            res = self.finalizer.reconcile(snap, name) if self.finalizer is not None else None
            if res is None:
                res = self.reconciler.reconcile(snap, name)
        except Exception as e:
            log.exception("pass raised", release=name)
            res = Result(errors=[f"{type(e).__name__}: {e}"], requeue_after=30.0)
        took = time.monotonic() - t0
        metrics.observe_reconcile(name, "error" if res.errors else "success", took)
        if res.errors:
            self.queue.add_rate_limited(name, at_least=res.requeue_after or 0.0)
        else:
            self.queue.forget(name)
            after = self._converged_after()  # a requeue further off than the sweep waits for the sweep
            self.queue.add(name, after if res.requeue_after is None else min(res.requeue_after, after))
        if res.changed:
            for dep in self._dependents.get(name, []):
                self.queue.add(dep)
        if self.on_pass:
            self.on_pass(snap, {name: took})
        return took

    def rollback(self, snap: RepoSnapshot | None, req: RollbackRequest) -> None:
        """Run a manual rollback asked through the API (the release's worker, before its pass)."""
        try:
            if snap is None:
                raise PipectlError("the controller has not read its git repository yet")
            msg = rollback_stage(self.reconciler, snap, req.release, req.stage, req.to_version, req.actor)
        except Exception as e:
            msg = redact(str(e) if isinstance(e, PipectlError) else f"{type(e).__name__}: {e}")
            log.error("manual rollback failed", release=req.release, stage=req.stage, error=msg)
            self.rollbacks.finish(req.id, False, msg)
            try:
                self.reconciler.store.add_event(
                    req.release, req.stage, "Warning", "ManualRollbackFailed", f"{req.actor}: {msg}"
                )
            except Exception as store_error:  # the request's own state says it failed already
                log.warning("event not recorded", error=str(store_error))
            return
        log.info("manual rollback", release=req.release, stage=req.stage, actor=req.actor, message=msg)
        self.rollbacks.finish(req.id, True, msg)

    def run_once(self) -> float:
        """Refresh, then run every due release's pass in this thread, dependencies first; returns
        seconds until the next one is due (benchmarks and tests; ``run`` uses workers)."""
        snap = self.refresh()
        if snap is None:
            return min(self.interval, 15.0)
        for name in dependency_order(snap):
            if self.stop.is_set():
                break
            if self.queue.take(name):
                try:
                    self.process(name)
                finally:
                    self.queue.done(name)
        nxt = self.queue.next_due()
        return max(0.0, min(nxt if nxt is not None else self.interval, self.interval))

    def _work(self) -> None:
        while not self.stop.is_set():
            name = self.queue.get(timeout=1.0)
            if name is None:
                continue
            try:
                self.process(name)
            finally:
                self.queue.done(name)
            if self.queue.idle(within=IDLE_TRIM_AFTER):
                # The sweep is over: drop its preloaded rows and hand the pages its passes freed
                # back (controller/obs/memory.py).
                self._end_sweep()
                memory.trim()

    def run(self) -> None:
        log.info("controller started", repo=self.source.repo, interval=self.interval, workers=self.workers)
        self.refresh()
        threads = [
            threading.Thread(target=self._work, name=f"pipectl-worker-{i}", daemon=True)
            for i in range(max(1, self.workers))
        ]
        for t in threads:
            t.start()
        while not self.stop.is_set():
            self.wake.wait(timeout=self._until_sweep())
            self.wake.clear()
            if not self.stop.is_set():
                self.refresh()
        self.queue.shutdown()
        for t in threads:
            t.join()
        log.info("controller stopped")


def _dependents(snap: RepoSnapshot) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in snap.releases:
        for dep in snap.release(name).spec.depends_on:
            out.setdefault(dep, []).append(name)
    return out


def state_dir_of(url: str) -> Path:
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).parent
    return Path(".pipectl")
