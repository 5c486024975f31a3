"""A helper thread that takes a share of the CPU backend's kernel work while the calling thread does
the rest (the landmark fit's second core).

The kernels are Numba functions that release the GIL (``nogil=True``), so a plain Python thread runs
them in parallel with the caller.  One helper per process, started on first use; the number of
cores is Numba's (``NUMBA_NUM_THREADS``: by default the cores this process may run on,
``os.sched_getaffinity``), and with one core nothing is handed over.  Work the helper runs never
hands work on (no waiting on itself), and a caller that has already given the helper a whole task
of its own keeps its kernels serial for that time (:func:`sharing`).  A pipeline stage running on its own
thread (the AU stage beside the landmark fit) declares the core it occupies while it works
(:func:`occupying`), and work is handed to the helper only while a core is left for it: on two cores,
only while the AU stage waits for its next frame.

Unlike Numba's ``parallel=True`` loops, no OpenMP team is involved: idle, the helper sleeps on a
queue (no spinning threads competing with the pipeline's AU and decode threads), and a process that
used it can still ``fork()`` (GNU OpenMP terminates a forked child that runs a parallel region).
No gpuau kernel is compiled with ``parallel=True``: the CCNF response maps, the warp and FHOG share a
large call's areas, outputs or faces between the two threads in chunks (:func:`run_range`).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

_local = threading.local()
_lock = threading.Lock()
_pool: "ThreadPoolExecutor | None" = None
_occupied = 0  # cores that working stage threads hold (:func:`occupying`)


def cores() -> int:
    """Cores the CPU kernels may use: Numba's thread count (``NUMBA_NUM_THREADS``, default the CPU affinity)."""
    import numba

    return numba.config.NUMBA_NUM_THREADS


def can_share() -> bool:
    """Whether the calling thread may hand work to the helper now: a core is left beside the calling thread
    and the stage threads at work (:func:`occupying`), and the calling thread is not :func:`sharing` already."""
    return cores() - _occupied > 1 and not getattr(_local, "sharing", False)


@contextmanager
def occupying():
    """Declare, for the block, that the calling thread (a pipeline stage's own thread) occupies a core.

    Measured on 2 cores (``python -m benchmarks.threads``, 2026-12-06): with the helper taking a share of the
    landmark fit's kernels while the AU stage worked on the other core, ``--quality fast`` analysed 12-30%
    fewer frames per second than with the fit on one core; lent only while the AU stage waits, the helper
    still takes the idle share of that core in ``--quality exact``.
    """
    global _occupied
    with _lock:
        _occupied += 1
    try:
        yield
    finally:
        with _lock:
            _occupied -= 1


def _helper_thread_init() -> None:
    _local.sharing = True  # the helper's own work never waits for the helper


def submit(fn, *args) -> Future:
    """Run ``fn(*args)`` on the helper thread (started on first use)."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(1, thread_name_prefix="gpuau-helper", initializer=_helper_thread_init)
        pool = _pool
    return pool.submit(fn, *args)


def run_range(fn, n: int, *args, split: bool = False) -> None:
    """Run ``fn(*args, start, stop)`` over ``[0, n)``, shared with the helper thread when asked and possible.

    With ``split`` true, ``n >= 2`` and :func:`can_share`, the calling thread and the helper take
    chunks of the range from a shared cursor until none is left (guided: a quarter of what remains,
    at least ``n // 16``), so a helper that starts late, or a core that another thread holds, leaves
    its share to the other thread instead of making it wait; otherwise the caller runs ``fn(*args,
    0, n)``.  ``fn`` is a GIL-free kernel that treats each index on its own (the same serial code for
    every index however the range is cut, so the same bits), writing into arrays in ``args``.
    Returns once every chunk is done; an exception of either thread is raised here.

    Parameters
    ----------
    fn : callable
        ``fn(*args, start, stop)``.
    n : int
        Length of the range.
    *args
        Leading arguments of ``fn``.
    split : bool
        Whether the work is worth a hand-over (the caller's threshold).
    """
    if not (split and n > 1 and can_share()):
        fn(*args, 0, n)
        return
    cursor = _Cursor(n)

    def work():
        while (chunk := cursor.take()) is not None:
            fn(*args, *chunk)

    rest = submit(work)
    try:
        work()
    finally:
        if not rest.cancel():  # not started yet: nothing left for it
            rest.result()


class _Cursor:
    """The next chunk of ``[0, n)`` for whichever thread asks (guided sizes)."""

    def __init__(self, n: int):
        self.n, self.next, self.smallest = n, 0, max(1, n // 16)
        self.lock = threading.Lock()

    def take(self) -> "tuple[int, int] | None":
        with self.lock:
            start = self.next
            if start >= self.n:
                return None
            self.next = min(self.n, start + max(self.smallest, (self.n - start) // 4))
            return start, self.next


@contextmanager
def sharing():
    """Mark the calling thread as sharing the cores with the helper: :func:`can_share` is False inside."""
    previous = getattr(_local, "sharing", False)
    _local.sharing = True
    try:
        yield
    finally:
        _local.sharing = previous


def _forget_helper() -> None:
    """In a forked child: the parent's helper thread does not exist there; start a new one on demand."""
    global _pool, _lock
    _pool = None
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_helper)
