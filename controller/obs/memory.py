"""Give freed heap back to the operating system (glibc only; a no-op elsewhere).

A pass over 1,000 releases builds and drops hundreds of thousands of small objects (the live
snapshot's scopes, pydantic models, SDK results). CPython frees them, but glibc keeps the freed
pages in its per-thread arenas, so the process's RSS stays at the pass's peak
(``docs/benchmarks.md``: ~60 MiB handed back by one trim after a cold pass at 1,000 releases).
``limit_arenas`` caps the arenas the controller's worker and prefetch threads spread over (glibc's
default is 8 per core), before they start; ``trim`` runs ``malloc_trim(0)`` when a sweep is over:
a worker leaves the queue with no pass in flight and none due within a second
(``engine.controller``), so the process idles at its live size, not its peak; and right after the
Kafka adapter's config read, whose answer librdkafka holds in C (~86 MiB at 5,000 topics, all but
~22 MiB of it given back by the trim).

``tune_gc`` spaces CPython's cyclic collections out: at 1,000 releases the controller's heap holds
~420k tracked objects, and a no-op pass allocates ~300k more (the Kafka config read, the live
snapshot's models), so with the default thresholds (700, 10, 10) one pass ran ~450 young and
2 full collections, 1.4 s of a 5.8 s pass; with ``GC_THRESHOLDS`` ~15 young ones (0.05-0.1 s).
The objects a pass drops are freed by reference counting as before; only cycles wait longer.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import sys
from typing import Any

M_ARENA_MAX = -8
"""mallopt's parameter number for the arena cap (glibc's malloc.h)."""


@functools.cache
def _glibc() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        lib.malloc_trim.argtypes, lib.mallopt.argtypes = [ctypes.c_size_t], [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return None
    return lib


GC_THRESHOLDS = (20_000, 50, 100)
"""gc.set_threshold: young collections every 20,000 net allocations (default 700); the older
generations' thresholds count young and middle collections (defaults 10 and 10)."""


def tune_gc() -> None:
    """Set ``GC_THRESHOLDS``."""
    gc.set_threshold(*GC_THRESHOLDS)


def set_up_process() -> None:
    """The controller process's memory settings (and the benchmarks' that stand in for it):
    before its API, worker and prefetch threads start."""
    limit_arenas()
    tune_gc()


def limit_arenas(n: int = 2) -> bool:
    """Cap glibc's malloc arenas at ``n`` (call before starting threads); True when applied."""
    lib = _glibc()
    return bool(lib is not None and lib.mallopt(M_ARENA_MAX, n) == 1)


def trim() -> bool:
    """Return the heap's free pages to the OS; True when some memory was released."""
    lib = _glibc()
    return bool(lib is not None and lib.malloc_trim(0))
