"""One threading model for the CPU kernels (gpuau.cpu.threads): no Numba ``parallel=True`` kernel (no
OpenMP team) anywhere in gpuau; ``run_range`` cuts a range between the caller and the helper thread;
a process forked after large split calls (aligned faces of default.wmv through FHOG and the warp)
gets a helper of its own and the same values."""
import importlib
import importlib.util
import multiprocessing
import pkgutil
import threading
from pathlib import Path

import numba
import numpy as np
import pytest

import gpuau
from gpuau.cpu import fhog as cpu_fhog
from gpuau.cpu import threads
from gpuau.cpu import warp_affine as cpu_warp
from test_fhog import aligned_faces  # noqa: F401 (fixture)

two_cores = pytest.mark.skipif(threads.cores() < 2, reason="one core: nothing is shared")


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


def _record(calls, start, stop):
    calls.append((start, stop, threading.current_thread().name.startswith("gpuau-helper")))
    if stop - start == 3:
        raise ValueError("three")


@two_cores
def test_run_range_halves():
    """Split: the helper takes ``[n // 2, n)``; not split (asked not to, one index, or while sharing):
    the caller takes all; an exception of the helper's half reaches the caller."""
    calls = []
    threads.run_range(_record, 4, calls, split=True)
    assert sorted(calls) == [(0, 2, False), (2, 4, True)]
    for n, split in ((4, False), (1, True)):
        calls.clear()
        threads.run_range(_record, n, calls, split=split)
        assert calls == [(0, n, False)]
    calls.clear()
    with threads.sharing():
        threads.run_range(_record, 4, calls, split=True)
    assert calls == [(0, 4, False)]
    calls.clear()
    with pytest.raises(ValueError, match="three"):
        threads.run_range(_record, 5, calls, split=True)
    assert sorted(calls) == [(0, 2, False), (2, 5, True)]


def _split_features(faces):
    """FHOG and a 2x warp of ``faces`` (both over the split thresholds), and whether the helper ran."""
    matrices = np.tile(np.array([[0.5, 0.1, 3.0], [-0.1, 0.5, 7.0]]), (len(faces), 1, 1))
    warped = cpu_warp.warp_affine(faces, np.arange(len(faces)), matrices, 224, 224)
    return cpu_fhog.fhog(faces), warped, threads._pool is not None


@two_cores
def test_fork_after_split_calls(aligned_faces, monkeypatch):  # noqa: F811
    monkeypatch.setattr(cpu_fhog, "PARALLEL_MIN_FACES", 2)
    monkeypatch.setattr(cpu_warp, "PARALLEL_MIN_VALUES", 2 * 224 * 224 * 3)
    expected = _split_features(aligned_faces)  # the parent's helper thread is running now
    assert expected[2]
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.apply_async(_split_features, (aligned_faces,)).get(timeout=120)
    assert child[2]  # the child split its calls on a helper of its own
    for a, b in zip(child[:2], expected[:2]):
        np.testing.assert_array_equal(a, b)
