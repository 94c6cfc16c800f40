"""Fixtures of the engine's unit tests that drive the real ``Reconciler`` over ``world.py``'s fakes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """No log rendering: the console renderer's rich tracebacks of a pass's locals take seconds.
    Modules that want it say ``pytestmark = pytest.mark.usefixtures("quiet_logs")``.

    Nothing is cached meanwhile: a module logger first used here would otherwise keep returning
    into the void after the fixture, and a later test reading the logs would see none."""
    saved = structlog.get_config()
    structlog.configure(
        processors=[], logger_factory=structlog.ReturnLoggerFactory(), cache_logger_on_first_use=False
    )
    yield
    structlog.configure(**saved)
