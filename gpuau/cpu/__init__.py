"""Numba (or NumPy) twins of the ``.cu`` kernels in :mod:`gpuau.kernels`, with the same signatures
minus the leading ``backend``; the ``cpu`` backend's ``backend.kernels.NAME`` is ``gpuau.cpu.MODULE.NAME``,
where ``MODULE`` is ``NAME`` unless :data:`gpuau.device.KERNELS` names another.  Each module imports Numba on first
use, not ``import gpuau``.

Importing this package points Numba's on-disk cache at a folder of its own for this version of the
kernels' sources (:func:`configure_numba_cache`), before any of its modules defines a cached kernel."""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
CACHE_PREFIX = "gpuau-kernels-"


def kernel_sources(package: Path = PACKAGE) -> list:
    """The sources under ``package`` that define cached Numba functions (``cache=True``)."""
    return sorted(p for p in package.rglob("*.py") if "cache=True" in p.read_text())


def kernels_digest(package: Path = PACKAGE) -> str:
    """Digest of the kernel sources' names and contents."""
    h = hashlib.sha256()
    for path in kernel_sources(package):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def configure_numba_cache() -> None:
    """Keep Numba's cache of the kernels in ``$NUMBA_CACHE_DIR`` (default: ``<gpuau cache>/numba``) /
    ``gpuau-kernels-<digest of the kernel sources>``.

    Numba checks a cached function against its own source file only. A kernel that calls a helper from
    another module keeps the helper's old code after the helper is edited. Measured: with
    ``pdm_fit.solve_cholesky`` edited to return zeros, the cached ``nu_rlms`` fit still moved the face.
    With one folder per version of all kernel sources, any edit starts from an empty cache; the next
    CPU run compiles once (:mod:`gpuau.warmup`).

    A folder already chosen by a parent process (warm-up children, worker processes) is kept. Call this
    before the first cached kernel is defined: Numba picks a function's cache folder when it is decorated.
    """
    base = os.environ.get("NUMBA_CACHE_DIR", "")
    if Path(base).name.startswith(CACHE_PREFIX):
        return
    if not base:
        from gpuau.models.cache import cache_dir

        base = str(cache_dir() / "numba")
    os.environ["NUMBA_CACHE_DIR"] = str(Path(base) / f"{CACHE_PREFIX}{kernels_digest()}")
    if "numba" in sys.modules:  # imported before gpuau: it reads its variables again
        from numba.core.config import reload_config

        reload_config()


configure_numba_cache()
