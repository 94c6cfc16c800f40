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


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine since boot, from /proc/stat (0, 0 elsewhere)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    """With ``PIPECTL_TEST_TIMES=FILE``, one line per test (setup to teardown): its wall seconds and
    how busy the machine's CPUs were meanwhile. That tells a test that waits (on windows, bake
    times, backends) from one that computes, which is what deciding how to split the suite over
    parallel workers needs; pytest's --durations gives the wall time only."""
    out = os.environ.get("PIPECTL_TEST_TIMES")
    if not out:
        yield
        return
    t0, (b0, a0) = time.monotonic(), _cpu_ticks()
    yield
    (b1, a1), wall = _cpu_ticks(), time.monotonic() - t0
    busy = (b1 - b0) / (a1 - a0) if a1 > a0 else 0.0
    worker = os.environ.get("PYTEST_XDIST_WORKER", "-")
    with open(out, "a") as f:
        f.write(f"{item.nodeid}\t{wall:.1f}\t{busy:.2f}\t{worker}\n")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The ``PIPECTL_TEST_TIMES`` lines of the slowest tests, with how busy the CPUs were (what
    --durations cannot tell), printed where CI's log shows them."""
    out = os.environ.get("PIPECTL_TEST_TIMES")
    if not out or os.environ.get("PYTEST_XDIST_WORKER") or not Path(out).exists():
        return
    rows = [line.split("\t") for line in Path(out).read_text().splitlines() if line.count("\t") == 3]
    rows.sort(key=lambda r: -float(r[1]))
    terminalreporter.section("slowest tests: wall seconds, CPU busy, worker")
    for nodeid, wall, busy, worker in rows[:30]:
        terminalreporter.write_line(f"{float(wall):8.1f}s  {float(busy):4.0%}  {worker:>4}  {nodeid}")
