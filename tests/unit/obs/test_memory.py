"""``obs.memory`` on this (glibc) machine: the arena cap is accepted and a trim after freeing a
large heap lowers the process's RSS."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from controller.obs import memory


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux") or memory._glibc() is None, reason="glibc only")
def test_trim_gives_freed_small_objects_back() -> None:
    assert memory.limit_arenas(2)
    # Buffers above pymalloc's 512 bytes come from malloc; one kept in every 64 pins the heap's
    # top, so glibc keeps the freed ones (~150 MiB) until a trim.
    junk = [bytes(2000) + str(i).encode() for i in range(75_000)]
    keep = junk[::64]
    del junk
    before = _rss_kib()
    assert memory.trim()
    after = _rss_kib()
    assert before - after > 50 * 1024, (before, after)  # at least 50 MiB handed back
    assert len(keep) == 1172


def test_tune_gc_spaces_collections_out() -> None:
    import gc

    before = gc.get_threshold()
    try:
        memory.tune_gc()
        assert gc.get_threshold() == memory.GC_THRESHOLDS
        assert memory.GC_THRESHOLDS[0] > before[0]
    finally:
        gc.set_threshold(*before)
