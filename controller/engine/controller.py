"""The long-running controller: poll git (or wake on a webhook), pin one commit per pass, and
reconcile each release from a work queue with requeue-after and exponential backoff.

One worker thread keeps the 2-core budget predictable; releases are visited in dependency order
(dependsOn first) so a dependency that succeeds unblocks its dependents in the same pass.
SIGTERM sets the stop event: the executor finishes the action in flight and the loop exits.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from controller.engine.reconciler import Reconciler
from controller.model.errors import PipectlError
from controller.obs import metrics
from controller.source.git import GitSource
from controller.source.validate import RepoSnapshot, load_repo

log = structlog.get_logger(__name__)


@dataclass
class QueueItem:
    due: float
    failures: int = 0


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
    return out


@dataclass
class Controller:
    source: GitSource
    reconciler: Reconciler
    interval: float = 30.0
    stop: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)
    clock: Callable[[], float] = time.monotonic
    on_pass: Callable[[RepoSnapshot, dict[str, float]], None] | None = None
    queue: dict[str, QueueItem] = field(default_factory=dict)
    _snap: RepoSnapshot | None = None
    last_commit: str | None = None
    last_error: str | None = None
    _prints: dict[str, str] = field(default_factory=dict)

    def trigger(self, release: str | None = None) -> None:
        """Reconcile now: one release (approval), or look at git now (webhook) — a new commit
        then makes due exactly the releases it changed."""
        if release is not None:
            self.queue.setdefault(release, QueueItem(self.clock())).due = self.clock()
        self.wake.set()

    def snapshot(self) -> RepoSnapshot:
        commit = self.source.resolve()
        if self._snap is not None and commit is not None and self._snap.commit == commit:
            return self._snap
        checkout = self.source.checkout(commit)
        snap = load_repo(checkout.root)
        snap.commit = commit
        prints = fingerprints(snap)
        if commit != self.last_commit:
            changed = sorted(n for n, fp in prints.items() if self._prints.get(n) != fp)
            log.info("new commit", commit=commit, changed=changed)
            for n in changed:
                self.queue.setdefault(n, QueueItem(self.clock())).due = self.clock()
        self._snap, self.last_commit, self._prints = snap, commit, prints
        return snap

    def run_once(self) -> float:
        """One pass over due releases; returns seconds until the next one is due."""
        try:
            snap = self.snapshot()
            self.last_error = None
        except PipectlError as e:
            self.last_error = str(e)
            log.error("git source failed", error=str(e))
            return min(self.interval, 15.0)
        now = self.clock()
        durations: dict[str, float] = {}
        order = dependency_order(snap)
        for name in order:
            self.queue.setdefault(name, QueueItem(now))
        for gone in set(self.queue) - set(order):
            del self.queue[gone]
        for name in order:
            if self.stop.is_set():
                break
            item = self.queue[name]
            if item.due > self.clock():
                continue
            t0 = time.monotonic()
            res = self.reconciler.reconcile(snap, name)
            durations[name] = time.monotonic() - t0
            metrics.observe_reconcile(name, "error" if res.errors else "success", durations[name])
            if res.errors:
                item.failures += 1
                backoff = min(300.0, 5.0 * 2 ** min(item.failures, 6))
                item.due = self.clock() + max(backoff, res.requeue_after or 0.0)
            else:
                item.failures = 0
                item.due = self.clock() + (
                    res.requeue_after if res.requeue_after is not None else self.interval
                )
        if self.on_pass:
            self.on_pass(snap, durations)
        nxt = min((i.due for i in self.queue.values()), default=self.clock() + self.interval)
        return max(0.0, min(nxt - self.clock(), self.interval))

    def run(self) -> None:
        log.info("controller started", repo=self.source.repo, interval=self.interval)
        while not self.stop.is_set():
            wait = self.run_once()
            if self.stop.is_set():
                break
            self.wake.wait(timeout=wait)
            self.wake.clear()
        log.info("controller stopped")


def state_dir_of(url: str) -> Path:
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).parent
    return Path(".pipectl")
