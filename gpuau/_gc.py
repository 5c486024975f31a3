"""Python's cyclic garbage collector in the processes gpuau owns: the command line and its worker processes."""
from __future__ import annotations

import gc

THRESHOLDS = (10_000, 50, 50)
"""``gc.set_threshold`` of those processes (CPython's default: 700, 10, 10; 2000, 10, 10 from 3.13)."""


def collect_rarely() -> None:
    """Collect the young generation every 10,000 net allocations and the older ones every 50 of the younger's
    collections, instead of every 700 and 10.  Starting up allocates hundreds of thousands of long-lived
    objects (imports, parsed models, Numba's cached kernels) with few cycles among them, and analysing a
    frame allocates arrays freed by reference counting: at CPython's thresholds the collector ran ~270 times
    during ``gpuau analyze default.wmv --quality fast``, 150 ms in all (each full collection traversing every
    long-lived object, holding the GIL the landmark and AU threads share); at these, ~18 times, 47 ms, with
    the same peak memory (370 MB).  For processes only: a library call leaves the caller's collector alone."""
    gc.set_threshold(*THRESHOLDS)
