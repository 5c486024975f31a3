"""CPU emulator of CUDA for gpuau's ``.cu`` kernels: the same source compiled as C++ and run on the CPU.

:func:`compile_module` force-includes ``cuda_emu.h`` (``__global__``, ``threadIdx``, ``__syncthreads``,
atomics, CUDA math), appends one ``extern "C"`` launcher per ``extern "C" __global__`` kernel, builds a
shared library with g++ (cached in ``<gpuau cache>/emulator/`` under a hash of everything that goes
into it) and loads it with ctypes.  The returned :class:`EmulatedModule` launches kernels with
CuPy's ``RawModule`` calling convention, on the emulated backend's device arrays
(:mod:`.emulated_arrays`: NumPy memory; a NumPy array as a pointer argument is refused, as CuPy refuses it).

Environment
-----------
``GPUAU_EMU_CXX``
    Compiler (default ``g++``).
``GPUAU_EMU_THREADS``
    OS threads for kernels without shared memory (default: the number of cores).
``GPUAU_EMU_ORDER=reverse``
    Run each launch's blocks, and each block's threads (between barriers), from the last to the first, so that a
    missing ``__syncthreads`` or a result that depends on which thread writes last shows as other numbers
    (``tests/test_engine.py`` runs the whole pipeline both ways).
``GPUAU_EMU_SANITIZE=address``
    Build with ``-fsanitize=address`` so out-of-bounds reads and writes abort with a report.  The
    Python process must then start with the ASan runtime preloaded; :func:`sanitizer_env` returns the
    environment for such a subprocess.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from gpuau.kernels import emulated_arrays

HEADER = Path(__file__).resolve().parent / "cuda_emu.h"
CXXFLAGS = ("-std=c++20", "-O2", "-shared", "-fPIC", "-pthread", "-ffp-contract=off", "-U_FORTIFY_SOURCE", "-w")
SANITIZE_FLAGS = ("-fsanitize=address", "-fno-omit-frame-pointer", "-g")


def _fma_flags() -> tuple:
    """``-mfma`` on an x86-64 host with FMA: the kernels' ``fmaf`` (``std::fma``) is then one instruction
    instead of a libm call (the CCNF maps, ~5M of them a face; the same value either way, rounded once)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split("\nflags", 1)[1].split("\n", 1)[0].split()
    except (OSError, IndexError):
        return ()
    return ("-mfma",) if platform.machine() == "x86_64" and "fma" in flags else ()

_LAUNCH_BOUNDS = r"(?:__launch_bounds__\s*\(\s*([^,()]+?)\s*(?:,[^()]*)?\)\s*)?"
_KERNEL = re.compile(rf'extern\s+"C"\s+__global__\s+{_LAUNCH_BOUNDS}void\s+{_LAUNCH_BOUNDS}(\w+)\s*\(')
"""A kernel: its ``__launch_bounds__`` (its threads per block at most, an expression of the source's macros without
parentheses; before or after ``void``, else empty) and its name."""

# Scalars accepted as kernel arguments, by parameter kind (see gpuau_emu::param_code).
_KIND_NAMES = {0: "pointer", 1: "signed integer", 2: "unsigned integer", 3: "floating point"}
_SCALAR_CTYPES = {
    np.dtype(np.int32): ctypes.c_int32,
    np.dtype(np.uint32): ctypes.c_uint32,
    np.dtype(np.int64): ctypes.c_int64,
    np.dtype(np.uint64): ctypes.c_uint64,
    np.dtype(np.float32): ctypes.c_float,
    np.dtype(np.float64): ctypes.c_double,
}


class EmulatorError(RuntimeError):
    """The emulator could not build or launch a kernel; the message says why."""


def kernel_names(code: str) -> list[str]:
    """Names of the ``extern "C" __global__`` kernels in ``code``, in order."""
    return list(dict.fromkeys(name for *_, name in _KERNEL.findall(code)))


def compiler() -> str:
    """The C++20 compiler the emulator builds kernels with: ``$GPUAU_EMU_CXX`` or ``g++``; EmulatorError if it is not
    on PATH."""
    cxx = os.environ.get("GPUAU_EMU_CXX", "g++")
    if shutil.which(cxx) is None:
        raise EmulatorError(f"the CUDA emulator needs a C++20 compiler; {cxx!r} is not on PATH (set GPUAU_EMU_CXX)")
    return cxx


def _sanitize() -> bool:
    value = os.environ.get("GPUAU_EMU_SANITIZE", "").strip().lower()
    if value not in ("", "0", "address"):
        raise EmulatorError(f"GPUAU_EMU_SANITIZE={value!r}: only 'address' is supported")
    return value == "address"


def sanitizer_env(env: "dict[str, str] | None" = None) -> dict[str, str]:
    """Environment for a subprocess that runs emulated kernels under AddressSanitizer."""
    env = dict(os.environ if env is None else env)
    lib = subprocess.run([compiler(), "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    env["LD_PRELOAD"] = lib
    env["GPUAU_EMU_SANITIZE"] = "address"
    env.setdefault("ASAN_OPTIONS", "detect_leaks=0")
    return env


def translation_unit(code: str) -> tuple[str, list[str]]:
    """C++ text built from a kernel source: the source plus one launcher per kernel, and the names.

    Sources that call ``__syncthreads`` run each block's threads as fibers meeting at every
    barrier; others in a loop, with blocks spread over OS threads when the source has no
    ``__shared__`` memory.
    """
    names = kernel_names(code)
    if not names:
        raise EmulatorError('no `extern "C" __global__ void NAME(` kernel in the source')
    mode = "kFibers" if "__syncthreads" in code else "kLoop" if "__shared__" in code else "kParallelLoop"
    entries = "".join(f"GPUAU_EMU_ENTRY({n}, {mode})\n" for n in names)
    # the emulator's header drops __launch_bounds__: each bound is kept as a function, which a launch checks
    bounds = [(before or after, name) for before, after, name in _KERNEL.findall(code) if before or after]
    if len(bounds) != code.count("__launch_bounds__"):  # one it cannot read would go unchecked
        raise EmulatorError("a kernel's __launch_bounds__ is not one the emulator reads (write "
                            "__launch_bounds__(EXPR) or __launch_bounds__(EXPR, N), EXPR without parentheses)")
    entries += "".join(f'extern "C" long gpuau_bound_{n}() {{ return (long)({bound}); }}\n' for bound, n in bounds)
    return code + "\n\n// ---- emulator entry points ----\n" + entries, names


def _cache_dir() -> Path:
    from gpuau.models.cache import cache_dir

    return cache_dir() / "emulator"


def build(code: str, name: str = "module") -> tuple[Path, list[str]]:
    """Compile ``code`` into a cached shared library; return its path and the kernel names."""
    unit, names = translation_unit(code)
    cxx = compiler()
    flags = CXXFLAGS + _fma_flags() + (SANITIZE_FLAGS if _sanitize() else ())
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\0".join([unit, HEADER.read_text(), cxx, version, *flags]).encode()).hexdigest()[:20]
    target = _cache_dir() / f"{name}-{key}.so"
    if target.is_file():
        return target, names
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / f"{name}.cpp"
        src.write_text(unit)
        out = Path(tmp) / "module.so"
        cmd = [cxx, *flags, "-include", str(HEADER), "-x", "c++", str(src), "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise EmulatorError(f"emulator build of {name}.cu failed:\n{proc.stderr[-6000:]}")
        os.replace(out, target)
    return target, names


def compile_module(code: str, name: str = "module") -> "EmulatedModule":
    """Build (or reuse) and load the emulated module of a kernel source text."""
    path, names = build(code, name)
    return EmulatedModule(path, names, name)


def _dims(value, what: str) -> "ctypes.Array":
    dims = (int(value),) if np.isscalar(value) else tuple(int(v) for v in value)
    if not 1 <= len(dims) <= 3 or min(dims) < 1:
        raise EmulatorError(f"{what} must be a positive int or a tuple of 1-3 positive ints, got {value!r}")
    if max(dims) > 2**31 - 1:  # CUDA's grid x limit, and what a 32-bit unsigned would silently wrap
        raise EmulatorError(f"{what} {value!r}: at most 2**31 - 1 in any dimension")
    dims = dims + (1,) * (3 - len(dims))
    return (ctypes.c_uint * 3)(*dims)


class EmulatedKernel:
    """One kernel of an :class:`EmulatedModule`; ``kernel(grid, block, args, shared_mem=0)``."""

    def __init__(self, lib: ctypes.CDLL, name: str):
        self.name = name
        self._launch = getattr(lib, f"gpuau_launch_{name}")
        self._launch.restype = ctypes.c_int
        self._launch.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        describe = getattr(lib, f"gpuau_params_{name}")
        describe.restype = ctypes.c_int
        codes = (ctypes.c_int * 256)()
        n = describe(codes)
        self.params = [(codes[i] // 256, codes[i] % 256) for i in range(n)]  # (kind, size)
        bound = getattr(lib, f"gpuau_bound_{name}", None)
        if bound is not None:
            bound.restype = ctypes.c_long
        self.launch_bound = None if bound is None else bound()  # __launch_bounds__'s threads per block

    def _argument(self, i: int, value, kind: int, size: int):
        where = f"kernel {self.name}, argument {i}"
        if kind == 0:
            if not isinstance(value, emulated_arrays.ndarray):  # CuPy refuses host arrays there too
                raise TypeError(f"{where}: pointer parameter needs a device array (the emulated backend's), got "
                                f"{type(value).__module__}.{type(value).__name__}")
            data = emulated_arrays.storage(value)
            if not data.flags.c_contiguous:
                raise ValueError(f"{where}: array must be C-contiguous")
            return ctypes.c_void_p(data.ctypes.data)
        if isinstance(value, np.ndarray) or not isinstance(value, np.generic):
            raise TypeError(
                f"{where}: {_KIND_NAMES[kind]} parameter needs a NumPy scalar (np.int32(...), np.float32(...)), "
                f"got {type(value).__name__}"
            )
        dtype = value.dtype
        got = 3 if dtype.kind == "f" else 1 if dtype.kind == "i" else 2 if dtype.kind == "u" else -1
        if dtype not in _SCALAR_CTYPES or dtype.itemsize != size or got != kind:
            raise TypeError(f"{where}: parameter is a {size}-byte {_KIND_NAMES[kind]}, got {dtype}")
        return _SCALAR_CTYPES[dtype](value.item())

    def __call__(self, grid, block, args, shared_mem: int = 0):
        if shared_mem:
            raise EmulatorError("dynamic shared memory (extern __shared__) is not supported by the emulator")
        args = tuple(args)
        if len(args) != len(self.params):
            raise TypeError(f"kernel {self.name} takes {len(self.params)} arguments, got {len(args)}")
        values = [self._argument(i, a, *p) for i, (a, p) in enumerate(zip(args, self.params))]
        pointers = (ctypes.c_void_p * max(len(values), 1))(*[ctypes.addressof(v) for v in values])
        block_dims = _dims(block, "block")
        threads = block_dims[0] * block_dims[1] * block_dims[2]
        if self.launch_bound is not None and threads > self.launch_bound:  # a GPU refuses it: too many resources
            raise EmulatorError(f"kernel {self.name}: block={block} has {threads} threads, over its "
                                f"__launch_bounds__({self.launch_bound})")
        status = self._launch(_dims(grid, "grid"), block_dims, pointers)
        if status != 0:
            raise EmulatorError(
                f"kernel {self.name}: invalid launch configuration grid={grid} block={block} "
                "(at most 1024 threads per block, grid y/z <= 65535)"
            )


class EmulatedModule:
    """Emulator counterpart of ``cupy.RawModule``: ``get_function(name)`` -> :class:`EmulatedKernel`."""

    def __init__(self, path: Path, names: list[str], source: str = "module"):
        self.path = path
        self.source = source
        self.kernel_names = tuple(names)
        self._lib = ctypes.CDLL(str(path))
        self._kernels: dict[str, EmulatedKernel] = {}

    def get_function(self, name: str) -> EmulatedKernel:
        if name not in self.kernel_names:
            raise EmulatorError(f"{self.source}.cu has no kernel {name!r} (has {', '.join(self.kernel_names)})")
        if name not in self._kernels:
            self._kernels[name] = EmulatedKernel(self._lib, name)
        return self._kernels[name]
