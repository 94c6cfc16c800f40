"""Retry policy and deadlines for backend calls.

- ``retrying``: a call that raises ``TransientBackendError`` is retried with exponential backoff
  (tenacity). Retries happen at ONE layer only: a ``retrying`` call made while another one is
  running in the same thread (the Hive adapter's ``apply`` sending a view to Presto, the transform
  adapter's ``apply`` running its statements) makes a single attempt and lets the outer call retry,
  so attempts never multiply (4, not 4 x 4 = 16). The outer call re-reads before acting again.
- ``deadline(seconds)``: an overall deadline for everything run inside the block (retries, waits
  and Presto polls included; nested deadlines keep the earlier one). Past it a call raises
  ``DeadlineExceeded`` (a transient error, never retried): a gate reads it as inconclusive.

Tests: ``tests/unit/adapters/test_retry_deadline.py``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    wait_exponential,
)

from controller.model.errors import TransientBackendError

F = TypeVar("F", bound=Callable[..., Any])

_ACTIVE: ContextVar[bool] = ContextVar("pipectl_retrying", default=False)
_DEADLINE: ContextVar[float | None] = ContextVar("pipectl_deadline", default=None)
clock: Callable[[], float] = time.monotonic  # tests may replace it


class DeadlineExceeded(TransientBackendError):
    """The overall deadline of the call passed (not retried; a later pass may try again)."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Bound everything run inside the block to ``seconds`` from now (an earlier outer deadline
    stays in force)."""
    until = clock() + seconds
    outer = _DEADLINE.get()
    token = _DEADLINE.set(until if outer is None else min(outer, until))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def time_left() -> float | None:
    """Seconds until the current deadline (may be negative), or None without one."""
    until = _DEADLINE.get()
    return None if until is None else until - clock()


def check_deadline(backend: str, what: str) -> float | None:
    """Raise ``DeadlineExceeded`` when the current deadline has passed; else the seconds left."""
    left = time_left()
    if left is not None and left <= 0:
        raise DeadlineExceeded(backend, f"{what}: deadline exceeded")
    return left


def _past_deadline(_state: RetryCallState) -> bool:
    left = time_left()
    return left is not None and left <= 0


def retrying(attempts: int = 4, max_wait: float = 8.0) -> Callable[[F], F]:
    """Retry a call that raises ``TransientBackendError``; re-raise the last one when attempts (or
    the current ``deadline``) run out. Nested inside another ``retrying`` call: one attempt."""
    backoff = wait_exponential(multiplier=0.25, max=max_wait)

    def wait(state: RetryCallState) -> float:
        left = time_left()
        pause = float(backoff(state))
        return pause if left is None else max(0.0, min(pause, left))

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if _ACTIVE.get():
                return fn(*args, **kwargs)  # an outer call retries
            token = _ACTIVE.set(True)
            try:
                retryer = Retrying(
                    retry=retry_if_exception_type(TransientBackendError)
                    & retry_if_not_exception_type(DeadlineExceeded),
                    stop=lambda state: state.attempt_number >= attempts or _past_deadline(state),
                    wait=wait,
                    reraise=True,
                )
                return retryer(fn, *args, **kwargs)
            finally:
                _ACTIVE.reset(token)

        return wrapper  # type: ignore[return-value]

    return deco
