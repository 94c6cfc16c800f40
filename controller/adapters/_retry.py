"""Retry policy for backend calls: transient errors are retried with exponential backoff (tenacity)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from controller.model.errors import TransientBackendError

F = TypeVar("F", bound=Callable[..., Any])


def retrying(attempts: int = 4, max_wait: float = 8.0) -> Callable[[F], F]:
    """Retry a call that raises ``TransientBackendError``; re-raise the last one when attempts run out."""
    deco = retry(
        retry=retry_if_exception_type(TransientBackendError),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.25, max=max_wait),
        reraise=True,
    )
    return deco  # type: ignore[return-value]
