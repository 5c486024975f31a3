"""Device selection: ``"auto" | "cpu" | "cuda" | "cuda:N" | "emulated"`` -> a :class:`Backend`.

A backend bundles the array module (``numpy`` or ``cupy``) with the compute kernels of that
device.  Pipeline code is written once against ``backend.xp`` and ``backend.kernels.<name>``;
no stage asks which device it runs on.

* ``cpu``      NumPy arrays, Numba kernels from :mod:`gpuau.cpu`.
* ``cuda``     CuPy arrays, the ``.cu`` RawKernels of :mod:`gpuau.kernels`.
* ``emulated`` device arrays of NumPy memory that keep CuPy's rules (:mod:`gpuau.kernels.emulated_arrays`),
               the same ``.cu`` sources compiled as C++ and run by the CPU emulator of CUDA's
               execution model (:mod:`gpuau.kernels.emulator`).  This is how the GPU code path is
               tested on machines without a GPU.

Importing this module imports none of numba, cupy or onnxruntime; they load on first use.
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)


# ``backend.kernels.NAME`` is ``gpuau.cpu.MODULE.NAME`` on the CPU backend and
# ``gpuau.kernels.MODULE.NAME`` (called with the backend first) on the GPU backends, where MODULE is
# NAME itself unless this table says otherwise (several kernels of one family share a module).
KERNELS: dict[str, str] = {"warp_affine_masked": "warp_affine", "running_median_update": "running_median",
                           "calc_params_batch": "pdm_fit", "shape_2d_batch": "pdm_fit", "convolution": "validator_cnn",
                           "max_pooling": "validator_cnn", "fully_connected": "validator_cnn",
                           "validator_faces": "paw", "solve_pnp": "pnp"}


class DeviceError(RuntimeError):
    """The requested device cannot be used; the message says why and what to do."""


class _Kernels:
    """Attribute access to the kernels of one backend, imported lazily."""

    def __init__(self, backend: "Backend"):
        self._backend = backend

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        module = KERNELS.get(name, name)
        package = "gpuau.cpu" if self._backend.name == "cpu" else "gpuau.kernels"
        fn = getattr(importlib.import_module(f"{package}.{module}"), name)
        if package == "gpuau.kernels":
            # GPU-path wrappers take the backend first (array module + module loader).
            from functools import partial

            fn = partial(fn, self._backend)
        setattr(self, name, fn)
        return fn


@dataclass(eq=False)
class Backend:
    """Array module plus the kernels of one device.

    Attributes
    ----------
    name : str
        ``"cpu"``, ``"cuda"`` or ``"emulated"``.
    device_id : int
        CUDA device ordinal (0 for the CPU backends).
    xp : module
        ``numpy`` (cpu), ``cupy`` (cuda) or :mod:`gpuau.kernels.emulated_arrays` (emulated: NumPy arrays whose
        kernels run in the CPU emulator).
    """

    name: str
    device_id: int = 0
    xp: ModuleType = field(default=None, repr=False)  # type: ignore[assignment]
    kernels: Any = field(default=None, repr=False)

    def __post_init__(self):
        if self.xp is None:
            self.xp = importlib.import_module({"cuda": "cupy", "emulated": "gpuau.kernels.emulated_arrays"}.get(
                self.name, "numpy"))
        self.kernels = _Kernels(self)

    @property
    def is_gpu(self) -> bool:
        return self.name == "cuda"

    @property
    def spec(self) -> str:
        """The device string of this backend (``"cpu"``, ``"emulated"``, ``"cuda:N"``)."""
        return f"cuda:{self.device_id}" if self.is_gpu else self.name

    def __reduce__(self):  # pickled as its device string: the receiving process resolves its own backend
        return resolve_device, (self.spec,)

    def asnumpy(self, a):
        """Copy ``a`` to host memory as a NumPy array (no-op on the CPU backend)."""
        if self.name != "cpu":
            return self.xp.asnumpy(a)
        import numpy as np

        return np.asarray(a)

    def use(self) -> None:
        """Make this backend's GPU the calling thread's current CUDA device, where CuPy allocates and launches
        what the kernel wrappers do not place themselves (CUDA's current device is per thread, each thread
        starting on device 0); a no-op on the CPU backends.  Every analysis calls it on the thread that runs it,
        before each frame or step, so that analyses of several GPUs may share a thread."""
        if self.is_gpu:
            import cupy

            cupy.cuda.Device(self.device_id).use()

    def asarray(self, a, dtype=None):
        """Move ``a`` onto this backend's device (under its device context, so ``cuda:N`` lands on GPU N)."""
        from gpuau.kernels.loader import device_context

        with device_context(self):
            return self.xp.asarray(a, dtype=dtype)

    def load_module(self, source: str, defines: "tuple[tuple[str, object], ...]" = ()):
        """Compiled ``gpuau/kernels/<source>.cu`` for this backend (CuPy RawModule, or the CPU
        emulator's equivalent); ``module.get_function(name)(grid, block, args)`` launches a kernel."""
        from gpuau.kernels.loader import load_module

        return load_module(self, source, defines)


def cuda_available() -> bool:
    """True when CuPy imports *and* finds a CUDA device (CuPy imports fine on a CPU box)."""
    return not cuda_unavailable_reason()


def cuda_unavailable_reason() -> str:
    """Why no CUDA device is usable, in words ("" when one is): several CuPy builds installed, CuPy missing or
    failing to import, or CUDA's runtime finding no device, with its own reason (a driver older than the CuPy build's
    CUDA says so: ``cudaErrorInsufficientDriver``)."""
    return _no_device_reason(_cupy_problem())


def _no_device_reason(problem: "str | None") -> str:
    """:func:`cuda_unavailable_reason` from :func:`_cupy_problem`'s answer."""
    if problem is None:
        return "CuPy is not installed"
    if problem:
        return problem
    import cupy

    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # no driver, or one too old for this CuPy build's CUDA
        return f"CUDA's runtime finds no device ({type(e).__name__}: {e})"
    return "" if count > 0 else "CUDA's runtime finds no device (no GPU visible)"


def _cupy_problem() -> "str | None":
    """What is wrong with the installed CuPy, in words: several builds in its folder, or one that does not import;
    "" when it imports, None when it is not installed."""
    from gpuau._deps import several_cupy_builds

    several = several_cupy_builds()
    if several:
        return several
    try:
        import cupy  # noqa: F401
    except Exception as e:
        if isinstance(e, ImportError) and e.name == "cupy":
            return None
        return f"CuPy does not import ({type(e).__name__}: {e})"
    return ""


def resolve_device(spec: "str | Backend" = "auto") -> Backend:
    """Turn a device string into a :class:`Backend`, one per device (``"cuda"``, ``"CUDA"`` and ``"cuda:0"``
    give the same object, so per-backend caches hold one copy of each model array).

    Parameters
    ----------
    spec : str or None
        ``"auto"`` (CUDA if a GPU is usable, else CPU; None too), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or
        ``"emulated"`` (NumPy + the ``.cu`` kernels run by the CPU emulator; for tests).

    Raises
    ------
    DeviceError
        ``cuda`` was asked for and no usable GPU exists, or the string is not a device.
    """
    if isinstance(spec, Backend):
        return spec
    s = "auto" if spec is None else str(spec).strip().lower()
    if s == "auto":
        problem = _cupy_problem()
        if problem:  # a GPU server whose CuPy is broken: said (a CPU machine, with or without CuPy, is not)
            log.warning("device auto: the CPU, since no CUDA device is usable (%s)", problem)
        s = "cpu" if _no_device_reason(problem) else "cuda"
    if s == "cuda":
        s = "cuda:0"
    return _backend(s)


@lru_cache(maxsize=None)
def _backend(s: str) -> Backend:
    """The backend of a canonical device string (``cpu``, ``emulated``, ``cuda:N``), created once."""
    if s in ("cpu", "emulated"):
        return Backend(s)
    if s.startswith("cuda:"):
        idx_text = s.partition(":")[2]
        if not idx_text.isdigit():
            raise DeviceError(f"device {s!r}: expected 'cuda' or 'cuda:N' with N a GPU index")
        idx = int(idx_text)
        reason = cuda_unavailable_reason()
        if reason:
            raise DeviceError(
                f"device {s!r}: no usable CUDA GPU ({reason}). "
                "Install the GPU extra of the driver's CUDA major (nvidia-smi's 'CUDA Version') from gpuau's clone, "
                "`pip install -e '.[cuda12]'` or `'.[cuda13]'`, on a machine with an NVIDIA GPU, or use the CPU "
                "(--device cpu; device='cpu' in Python)."
            )
        import cupy

        n = cupy.cuda.runtime.getDeviceCount()
        if idx >= n:
            raise DeviceError(f"device {s!r}: only {n} CUDA device(s) present (0..{n - 1})")
        return Backend("cuda", device_id=idx)
    raise DeviceError(f"unknown device {s!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
