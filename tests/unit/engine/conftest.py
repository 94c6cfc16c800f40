"""Fixtures of the engine's unit tests that drive the real ``Reconciler`` over ``world.py``'s fakes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """No log rendering: the console renderer's rich tracebacks of a pass's locals take seconds.
    Modules that want it say ``pytestmark = pytest.mark.usefixtures("quiet_logs")``."""
    saved = structlog.get_config()
    structlog.configure(processors=[], logger_factory=structlog.ReturnLoggerFactory())
    yield
    structlog.configure(**saved)
