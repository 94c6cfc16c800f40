"""The schema registry at the controller's commit, kept in the state store and rebuilt from git.

``RegistrySync.at(head)`` returns ``controller.rollout.schema_registry.Registry`` folded over every
commit of the branch's first-parent line up to ``head``. The registry is stored under the key
``schema-registry`` with the last commit folded in; a newer head folds only the commits after it.
When the stored commit is not on ``head``'s history (a force-push) or the store has lost the
document, the registry is rebuilt from the first commit. Both ways fold the same commits in the
same order, so ids and versions come out the same (``tests/unit/engine/test_registry_sync.py``).

A plain directory (no git) has no history: its registry is that tree alone, one version per
subject, and is not stored.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from controller.rollout.schema_registry import Registry, build, fold
from controller.source.git import GitSource
from controller.source.schema_history import history, in_snapshot
from controller.source.validate import RepoSnapshot
from controller.store.db import Store

KEY = "schema-registry"


class RegistrySync:
    def __init__(self, store: Store, source: GitSource, snapshot: Callable[[str | None], RepoSnapshot]):
        self.store = store
        self.source = source
        self.snapshot = snapshot
        """The tree at a commit (used for plain directories only)."""
        self._lock = threading.Lock()
        self._cached: Registry | None = None

    def at(self, head: str | None) -> Registry:
        """The registry with every commit up to ``head`` folded in."""
        if head is None or not self.source.is_git:
            return fold(Registry(), in_snapshot(self.snapshot(head)))
        with self._lock:
            if self._cached is not None and self._cached.head == head:
                return self._cached
            raw = self.store.kv_get(KEY)
            stored = Registry.model_validate_json(raw) if raw else None
            if stored is not None and stored.head == head:
                self._cached = stored
                return stored
            since = None
            if stored is not None and stored.head and self.source.is_ancestor(stored.head, head):
                since = stored.head
            steps = history(self.source, head, since, self.source.subdir)
            reg = build(steps, stored if since else None)
            self.store.kv_put(KEY, reg.model_dump_json())
            self._cached = reg
            return reg
