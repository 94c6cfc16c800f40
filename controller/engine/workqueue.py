"""A rate-limited work queue of release names, after controller-runtime's workqueue.

- an item is in the queue at most once, due at the earliest time it was asked for;
- at most one worker holds an item at a time: an item added while a worker holds it is due again
  only once that worker is ``done`` with it (so a release never has two passes at once);
- ``add_rate_limited`` backs an item off exponentially per failure (5 s, 10 s, … up to 5 min);
  ``forget`` resets that after a success.

Thread-safe: the API thread (webhook, approvals) and the workers share one queue.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class WorkQueue:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        base_delay: float = 5.0,
        max_delay: float = 300.0,
    ):
        self._clock = clock
        self._base = base_delay
        self._max = max_delay
        self._cond = threading.Condition()
        self._due: dict[str, float] = {}
        self._active: set[str] = set()
        self._again: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._closed = False

    def add(self, name: str, after: float = 0.0) -> None:
        """Make ``name`` due in ``after`` seconds (or sooner, if it already is)."""
        at = self._clock() + max(0.0, after)
        with self._cond:
            pending = self._again if name in self._active else self._due
            pending[name] = min(pending.get(name, math.inf), at)
            self._cond.notify_all()

    def add_rate_limited(self, name: str, at_least: float = 0.0) -> float:
        """Requeue after a failure with exponential backoff; returns the delay."""
        with self._cond:
            n = self._failures.get(name, 0) + 1
            self._failures[name] = n
        delay = max(at_least, min(self._max, self._base * 2.0 ** min(n - 1, 10)))
        self.add(name, delay)
        return delay

    def forget(self, name: str) -> None:
        with self._cond:
            self._failures.pop(name, None)

    def failures(self, name: str) -> int:
        with self._cond:
            return self._failures.get(name, 0)

    def get(self, timeout: float | None = None) -> str | None:
        """The next due item not held by a worker (the earliest first), or None after ``timeout``."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while not self._closed:
                now = self._clock()
                ready = [(at, n) for n, at in self._due.items() if at <= now and n not in self._active]
                if ready:
                    _, name = min(ready)
                    del self._due[name]
                    self._active.add(name)
                    return name
                wait = min((at for at in self._due.values()), default=math.inf) - now
                if deadline is not None:
                    wait = min(wait, deadline - now)
                    if wait <= 0:
                        return None
                self._cond.wait(timeout=None if math.isinf(wait) else max(wait, 0.005))
        return None

    def take(self, name: str) -> bool:
        """Hold ``name`` now if it is due and no worker holds it (a caller running passes in order)."""
        with self._cond:
            at = self._due.get(name)
            if at is None or at > self._clock() or name in self._active:
                return False
            del self._due[name]
            self._active.add(name)
            return True

    def done(self, name: str) -> None:
        with self._cond:
            self._active.discard(name)
            if name in self._again:
                at = self._again.pop(name)
                self._due[name] = min(self._due.get(name, math.inf), at)
            self._cond.notify_all()

    def remove(self, name: str) -> None:
        with self._cond:
            self._due.pop(name, None)
            self._again.pop(name, None)
            self._failures.pop(name, None)

    def names(self) -> set[str]:
        with self._cond:
            return set(self._due) | set(self._active) | set(self._again)

    def due_in(self, name: str) -> float | None:
        with self._cond:
            at = self._due.get(name, self._again.get(name))
        return None if at is None else at - self._clock()

    def next_due(self) -> float | None:
        """Seconds until the earliest waiting item is due (None when nothing waits)."""
        with self._cond:
            at = min(self._due.values(), default=None)
        return None if at is None else at - self._clock()

    def idle(self, within: float = 0.0) -> bool:
        """True when no worker holds an item and none is due within ``within`` seconds."""
        with self._cond:
            if self._active:
                return False
            at = min(self._due.values(), default=math.inf)
        return at - self._clock() > within

    def shutdown(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
