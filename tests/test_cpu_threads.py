"""One threading model for the CPU kernels (gpuau.cpu.threads): no Numba ``parallel=True`` kernel (no
OpenMP team) anywhere in gpuau; ``run_range`` shares a range between the caller and the helper thread,
only while a core is free of the stage threads at work;
a process forked after large split calls (aligned faces of default.wmv through FHOG and the warp)
gets a helper of its own and the same values."""
import importlib
import importlib.util
import multiprocessing
import pkgutil
import threading
import time
from pathlib import Path

import numba
import numpy as np
import pytest

import gpuau
from backends import forks_with_threads, two_cores
from gpuau.cpu import fhog as cpu_fhog
from gpuau.cpu import threads
from gpuau.cpu import warp_affine as cpu_warp



def test_no_numba_kernel_is_parallel():
    """Every Numba function of every gpuau module that uses Numba is compiled without ``parallel``."""
    dispatchers = {}
    for info in pkgutil.walk_packages(gpuau.__path__, "gpuau."):
        spec = importlib.util.find_spec(info.name)
        if spec.origin is None or not spec.origin.endswith(".py") or "numba" not in Path(spec.origin).read_text():
            continue
        module = importlib.import_module(info.name)
        dispatchers.update({f"{info.name}.{k}": v for k, v in vars(module).items()
                            if isinstance(v, numba.core.dispatcher.Dispatcher) and v.__module__ == info.name})
    assert {"gpuau.cpu.fhog._fhog_range", "gpuau.cpu.warp_affine._warp_range",
            "gpuau.cpu.ccnf_response._response_range"} <= set(dispatchers)
    assert [name for name, fn in dispatchers.items() if fn.targetoptions.get("parallel")] == []


def _record(calls, slow, start, stop):
    helper = threading.current_thread().name.startswith("gpuau-helper")
    calls.append((start, stop, helper))
    if stop - start == 3:
        raise ValueError("three")
    time.sleep(slow)


@two_cores
def test_run_range_chunks():
    """Split: the caller and the helper take chunks of the range until none is left, each index once
    (both take chunks while the other works; guided sizes, at least n // 16); not split (asked
    not to, one index, or while sharing): the caller takes all; an exception of the helper's chunk
    reaches the caller (the first chunk of 12, [0, 3), raises on whichever thread took it)."""
    calls, helper_took_one = [], threading.Event()

    def record_both(calls, slow, start, stop):  # the caller's chunks wait until the helper has one: on a busy
        _record(calls, slow, start, stop)       # machine it could wake after the caller took them all
        if threading.current_thread().name.startswith("gpuau-helper"):
            helper_took_one.set()
        else:
            assert helper_took_one.wait(60), "the helper thread took no chunk"

    threads.run_range(record_both, 64, calls, 0.01, split=True)
    covered = sorted(i for start, stop, _ in calls for i in range(start, stop))
    assert covered == list(range(64))
    assert any(helper for *_, helper in calls) and not all(helper for *_, helper in calls)
    assert min(stop - start for start, stop, _ in calls) >= 4 and max(stop - start for start, stop, _ in calls) == 16
    for n, split in ((4, False), (1, True)):
        calls.clear()
        threads.run_range(_record, n, calls, 0.0, split=split)
        assert calls == [(0, n, False)]
    calls.clear()
    with threads.sharing():
        threads.run_range(_record, 4, calls, 0.0, split=True)
    assert calls == [(0, 4, False)]
    calls.clear()
    with pytest.raises(ValueError, match="three"):
        threads.run_range(_record, 12, calls, 0.0, split=True)  # its first chunk is [0, 3)



@two_cores
def test_no_sharing_while_stage_threads_hold_the_other_cores():
    """While stage threads declare that they occupy every core but the caller's, ``run_range`` keeps the range
    on the calling thread; once they are done, it shares again."""
    calls, started, done = [], threading.Event(), threading.Event()

    def stage():
        with threads.occupying():
            started.set()
            done.wait()

    workers = [threading.Thread(target=stage) for _ in range(threads.cores() - 1)]
    for w in workers:
        w.start()
    started.wait()
    while threads._occupied < len(workers):
        time.sleep(0.001)
    assert not threads.can_share()
    threads.run_range(_record, 64, calls, 0.0, split=True)
    assert calls == [(0, 64, False)]
    done.set()
    for w in workers:
        w.join()
    assert threads._occupied == 0 and threads.can_share()


def _split_features(faces):
    """FHOG and a 2x warp of ``faces`` (both over the split thresholds), and whether the helper ran."""
    matrices = np.tile(np.array([[0.5, 0.1, 3.0], [-0.1, 0.5, 7.0]]), (len(faces), 1, 1))
    warped = cpu_warp.warp_affine(faces, np.arange(len(faces)), matrices, 224, 224)
    return cpu_fhog.fhog(faces), warped, threads._pool is not None


@two_cores
@forks_with_threads
def test_fork_after_split_calls(aligned_faces, monkeypatch):
    monkeypatch.setattr(cpu_fhog, "PARALLEL_MIN_FACES", 2)
    monkeypatch.setattr(cpu_warp, "PARALLEL_MIN_VALUES", 2 * 224 * 224 * 3)
    expected = _split_features(aligned_faces)  # the parent's helper thread is running now
    assert expected[2]
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.apply_async(_split_features, (aligned_faces,)).get(timeout=120)
    assert child[2]  # the child split its calls on a helper of its own
    for a, b in zip(child[:2], expected[:2]):
        np.testing.assert_array_equal(a, b)
