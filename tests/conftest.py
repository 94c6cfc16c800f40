"""Every test runs without the user's client config (``~/.config/pipectl/config.yaml``): a context
there would change the default --repo/--state/--server of every pipectl the tests start, and a
controller the tests start must not record itself in it. Tests of contexts set their own file.

A run can also be given a deadline (``PIPECTL_TEST_DEADLINE``, below)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest


def pytest_configure() -> None:
    home = Path(tempfile.mkdtemp(prefix="pipectl-test-config-"))
    os.environ["PIPECTL_CONFIG"] = str(home / "config.yaml")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """With ``PIPECTL_TEST_DEADLINE`` (epoch seconds; ``.ci/run`` sets it a few minutes short of
    CI's limit), a test that would start after it fails at once instead of running: the run then
    ends with its report (the failures' tracebacks, the slowest tests) rather than being killed
    with none, and the tests that did not run are listed as failed, never as passed."""
    deadline = os.environ.get("PIPECTL_TEST_DEADLINE")
    if deadline and time.time() > float(deadline):
        pytest.fail(f"not run: the run's time budget ended (PIPECTL_TEST_DEADLINE={deadline})", pytrace=False)
