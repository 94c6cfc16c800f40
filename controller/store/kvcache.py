"""A pass-wide read cache of the key/value rows only the leading controller writes (issue #17).

At 1,000 converged releases a no-op pass read five ``kv`` rows per release one statement at a
time (its rollout documents, its history, its inventory). ``Store.preload_kv`` reads every row
under the controller-owned prefixes in one statement at the start of a pass (``Controller.refresh``)
and ``Store.kv_get`` answers those keys from it until the next preload.

Why it stays true: keys under these prefixes are written by the controller's own passes, through
the same ``Store`` (``kv_put`` writes through to the cache after its transaction commits), and only
by the leader (writes are fenced). A key written while a preload was reading is read from the
store instead (the preload may have seen the value before that write). Keys people write through
the CLI or the API from another process (approvals, suspension, destructive-change approvals)
are never cached, with one exception: suspensions (``store.suspend``), read once per pass with
the rest. A suspension written through this ``Store`` (the API) updates the cache at once; one
written by another process (``pipectl suspend`` on the state store itself) is seen by the passes
that start after it, not by the rest of a pass already running (at 1,000 releases one statement
per release was ~0.4 ms of every release's pass).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

#: In the cache: "not known here, read the store" (written while the preload was reading).
_UNKNOWN = object()


class KvReadCache:
    """Rows of ``prefixes`` as of the last ``load``, kept current by this process's own writes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, object] | None = None
        self._prefixes: tuple[str, ...] = ()
        self._loading: set[str] | None = None

    def load(self, prefixes: Iterable[str], read: Callable[[tuple[str, ...]], dict[str, str]]) -> None:
        """Replace the cache with ``read(prefixes)``; keys written meanwhile are left to the store."""
        wanted = tuple(prefixes)
        with self._lock:
            self._loading = set()
        try:
            rows: dict[str, object] = dict(read(wanted))
        except BaseException:
            with self._lock:
                self._loading, self._rows, self._prefixes = None, None, ()
            raise
        with self._lock:
            for key in self._loading or ():
                rows[key] = _UNKNOWN
            self._loading, self._rows, self._prefixes = None, rows, wanted

    def clear(self) -> None:
        with self._lock:
            self._rows, self._prefixes = None, ()

    def get(self, key: str) -> tuple[bool, str | None]:
        """``(True, value)`` when the cache answers for ``key`` (value None: no such row), else
        ``(False, None)``: read the store."""
        with self._lock:
            if self._rows is None or not key.startswith(self._prefixes):
                return False, None
            value = self._rows.get(key)
        if value is _UNKNOWN:
            return False, None
        return True, value if isinstance(value, str) else None

    def wrote(self, key: str, value: str | None) -> None:
        """``key`` now holds ``value`` in the store (None: deleted); called after the commit."""
        with self._lock:
            if self._loading is not None:
                self._loading.add(key)
            if self._rows is not None and key.startswith(self._prefixes):
                if value is None:
                    self._rows.pop(key, None)
                else:
                    self._rows[key] = value


class WaitingCache:
    """The journal's ``waiting`` action ids per (release, stage) as of the last ``load``: a
    converged pass asks for its release-stage's (``Store.journal_settle``), and at 1,000 releases
    one statement each was ~1 ms of every release's pass. Any journal write of this process drops
    the whole cache until the next load (``journal_end`` names no release), and a load that a write
    overlapped is not kept; only the leader writes the journal (fenced), as for the rows above."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str], frozenset[str]] | None = None
        self._writes = 0

    def load(self, read: Callable[[], dict[tuple[str, str], frozenset[str]]]) -> None:
        with self._lock:
            writes = self._writes
        rows = read()
        with self._lock:
            if writes == self._writes:
                self._rows = rows

    def wrote(self) -> None:
        with self._lock:
            self._writes += 1
            self._rows = None

    def clear(self) -> None:
        """Forget the rows (as a write does: a load in flight is not kept either)."""
        self.wrote()

    def get(self, release: str, stage: str) -> frozenset[str] | None:
        """The waiting action ids, or None: not known here, read the store."""
        with self._lock:
            return None if self._rows is None else self._rows.get((release, stage), frozenset())
