"""Backends every kernel test runs on, the tolerance table, and the known per-backend gaps.

The ``backend`` fixture (registered in ``conftest.py``) yields ``cpu`` and ``emulated`` always, and
``cuda`` when :func:`gpuau.device.cuda_available` finds a GPU (marked ``gpu``, so ``pytest -m gpu``
is the lent-GPU run).  One test body runs on all of them; the Numba/NumPy result is the oracle.

Known gaps live in ``tests/backend_gaps.toml`` (test name + backend + reason) and turn into strict
xfails, so a gap that gets fixed shows up as a failure to remove from the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gpuau.cpu import threads
from gpuau.device import cuda_available, resolve_device

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

GAPS_FILE = Path(__file__).with_name("backend_gaps.toml")

# Tolerances of a backend's output against the oracle, per dtype, for kernels that are not
# bit-exact by construction: (rtol, atol).  Integer outputs must match exactly.
TOLERANCES: dict[np.dtype, tuple[float, float]] = {
    np.dtype(np.uint8): (0.0, 0.0),
    np.dtype(np.int32): (0.0, 0.0),
    np.dtype(np.int64): (0.0, 0.0),
    np.dtype(np.float32): (1e-5, 1e-6),
    np.dtype(np.float64): (1e-12, 1e-12),
}


def backend_names() -> list:
    """``pytest.param``s for the backends of this machine."""
    names = [pytest.param("cpu", id="cpu"), pytest.param("emulated", id="emulated")]
    if cuda_available():
        names.append(pytest.param("cuda", id="cuda", marks=pytest.mark.gpu))
    return names


devices_only = pytest.mark.parametrize(
    "backend", [p for p in backend_names() if p.id != "cpu"], indirect=True)
"""For a test whose oracle is the cpu backend's own kernel (the Numba twin): the ``backend`` fixture without ``cpu``,
where the test would compare that kernel with itself."""

two_cores = pytest.mark.skipif(threads.cores() < 2, reason="one core: nothing is shared")
"""For a test of the CPU backend's helper thread (gpuau.cpu.threads), which takes work only beside a second core."""
forks_with_threads = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
"""For a test that forks a process whose helper thread runs, which is what it checks (Python 3.12+ warns of it)."""


def load_gaps(path: Path = GAPS_FILE) -> dict[tuple[str, str], str]:
    """``{(test function name, backend): reason}`` from ``backend_gaps.toml``."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    return {(g["test"], g["backend"]): g["reason"] for g in data.get("gap", [])}


@pytest.fixture(params=backend_names())
def backend(request):
    """A :class:`gpuau.device.Backend`; known gaps of this test on it become strict xfails."""
    reason = load_gaps().get((request.node.originalname, request.param))
    if reason:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
    return resolve_device(request.param)


def assert_backend_close(backend, actual, expected, *, exact: bool = False, err_msg: str = ""):
    """Assert a backend's output equals the oracle: exactly, or within :data:`TOLERANCES`."""
    actual = backend.asnumpy(actual)
    expected = np.asarray(expected)
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    if exact:
        np.testing.assert_array_equal(actual, expected, err_msg=err_msg)
    else:
        rtol, atol = TOLERANCES[expected.dtype]
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=err_msg)
